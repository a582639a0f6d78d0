"""``zdu demo``'s ``get`` scenarios: a GET-like fleet behind HAProxy, upgraded node by node twice.

Once the way GET's zero-downtime playbook does it alone (``drain = false``: stop the node, rely on
HAProxy's health checks) and once with zdu's drain, each one minor version further, on the same fleet
and under the same probe traffic (dry-run: it records, never gates).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from zdu.plugins import Version, load_config
from zdu_demo.scenarios import DemoRow, DemoSettings, Scenario, create_database, next_release
from zdu_get.fleet import LocalGetFleet

__all__ = ["run_get_scenarios"]


def run_get_scenarios(
    scenarios: Sequence[Scenario], settings: DemoSettings, start: Version, startup_delay: float
) -> dict[str, DemoRow]:
    """Start a fleet at ``start`` behind HAProxy, upgrade it by each scenario in turn, stop it.

    The nodes share one SQLite database (writes acknowledged by one node are read back through any),
    and HAProxy retries nothing (``retries 0``, no redispatch), so that the probe's figures and wrk's
    are the fleet's own.
    """
    console = settings.console
    directory = Path(tempfile.mkdtemp(prefix="zdu-demo-get-"))
    database = directory / "gitlab.sqlite"
    create_database(database, start, settings.manager)
    fleet = LocalGetFleet(directory / "fleet", startup_delay=startup_delay, database=database)
    version = start
    rows: dict[str, DemoRow] = {}
    try:
        console.print("starting 3 demo-app nodes behind HAProxy, with a GET-like Ansible inventory …")
        url = fleet.up(str(version))
        console.print(f"the fleet serves at {url}")
        traffic = settings.traffic
        for scenario in scenarios:
            if settings.cancel.is_set():
                break
            release = next_release(version)
            raw = {
                "target": {"name": "demo-get", "platform": "get", "version": str(version)},
                "platform": fleet.platform_options(
                    drain_timeout=traffic.stream_seconds + 5.0, ready_timeout=30.0
                ),
                "release": {"version": str(release)},
                "strategy": {"name": "get", **scenario.options},
                "probes": [traffic.probe()],
                "migrations": {"name": "get-post-deployment"},
                "upgrade": {"state_dir": str(directory / "state")},
            }
            console.print(
                f"[bold]get ({scenario.variant})[/bold]: {version} -> {release} with "
                f"{traffic.rps:g} probe requests/s, {traffic.streams} long downloads and "
                f"{traffic.sockets} websockets"
            )
            rows[scenario.key] = settings.run_upgrade(
                scenario, load_config(raw, settings.manager), url, fleet.retries
            )
            version = release
    finally:
        console.print("stopping the fleet and HAProxy …")
        fleet.down()
        shutil.rmtree(directory, ignore_errors=True)
    return rows
