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
from typing import Any

from zdu.config import load_config
from zdu.errors import ZduError
from zdu.model import UpgradeStatus, Version
from zdu.upgrade import Upgrade
from zdu_get.fleet import LocalGetFleet
from zdu_local.demo import DemoRow, Scenario

__all__ = ["run_get_scenarios"]


def run_get_scenarios(
    scenarios: Sequence[Scenario], settings: Any, start: Version, startup_delay: float
) -> dict[str, DemoRow]:
    """Start a fleet at ``start`` behind HAProxy, upgrade it by each scenario in turn, stop it."""
    console = settings.console
    directory = Path(tempfile.mkdtemp(prefix="zdu-demo-get-"))
    fleet = LocalGetFleet(directory / "fleet", startup_delay=startup_delay)
    version = start
    rows: dict[str, DemoRow] = {}
    try:
        console.print("starting 3 demo-app nodes behind HAProxy, with a GET-like Ansible inventory …")
        console.print(f"the fleet serves at {fleet.up(str(version))}")
        for scenario in scenarios:
            if settings.cancel.is_set():
                break
            release = Version.parse(f"{version.major}.{version.minor + 1}.0")
            raw = {
                "target": {"name": "demo-get", "platform": "get", "version": str(version)},
                "platform": fleet.platform_options(),
                "release": {"version": str(release)},
                "strategy": {"name": "get", **scenario.options},
                "probes": [
                    {"name": "http", "rps": settings.rps, "clients": settings.clients, "dry_run": True}
                ],
                "migrations": {"name": "get-post-deployment"},
                "upgrade": {"state_dir": str(directory / "state")},
            }
            console.print(
                f"[bold]get ({scenario.variant})[/bold]: {version} -> {release}"
                f" with {settings.rps:g} probe requests/s from {settings.clients} clients"
            )
            upgrade = Upgrade(load_config(raw, settings.manager), settings.manager, verify_seconds=1.0)
            upgrade.cancel = settings.cancel
            report = upgrade.run()
            rows[scenario.key] = DemoRow.from_report(scenario, report)
            if report.status is not UpgradeStatus.SUCCEEDED:
                raise ZduError(f"demo scenario {scenario.key} did not complete: {report.error}")
            version = release
    finally:
        console.print("stopping the fleet and HAProxy …")
        fleet.down()
        shutil.rmtree(directory, ignore_errors=True)
    return rows
