"""``zdu demo``: local fleets upgraded by each strategy in turn, under traffic a skeptic accepts.

Every scenario is measured twice, by two instruments that share no code:

* zdu's ``http`` probe, open loop (request starts follow a schedule, never waiting for answers) and
  with nothing retrying on its behalf, sending GitLab-shaped traffic: page views with their assets,
  API reads, writes that are read back (lost writes), long downloads (cut streams) and websockets
  held across the rollout (dropped sockets);
* wrk, an independent load generator (Debian's ``wrk``), sending page views and writes through the
  same router at the same time (:mod:`zdu_demo.crosscheck`).

The router (nginx for the local platform, HAProxy for the GET-like fleet) never retries a request:
every zero is the fleet's own. Beside the zeros stand the negative controls, measured by the same
instruments in the same run: ``recreate`` (the maintenance window), ``rolling`` with ``no drain``
(instances stopped while still routed), ``get`` without drain (GET's own way), and post-deployment
migrations run first (unsafe). Each scenario's role says which it is.

Fleets: the scenarios without migrations share one fleet that starts at 16.6.0 (its database as 16.6
left it) and goes one minor version further per scenario; each scenario with migrations gets a fresh
fleet at 16.5.0 whose database has 16.5's schema, upgraded to 16.6.0 (a column rename split in a
regular and a post-deployment migration); the GET-like fleet runs behind HAProxy. Every fleet's
instances share one SQLite database, so that a write acknowledged by one is read back through any,
and a background worker runs the batched background migrations 16.6 queues (the migrations scenario
waits for them before it calls the upgrade finished).
The probe runs in dry-run mode (it records, never gates), so every scenario runs to its end and the
table shows what users would have seen. Every process the demo starts is stopped at the end, also on
Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console

from zdu.plugins import (
    Journal,
    PlatformEnv,
    ProcessIdentity,
    ProgressObserver,
    Version,
    WarningSummary,
    ZduPluginManager,
    interruptible,
    load_config,
    spawn,
    stderr_console,
    stop_processes,
)
from zdu_demo import demo_app_command, hookspecs
from zdu_demo.demo_app import DEMO_MIGRATIONS
from zdu_demo.scenarios import (
    CHAIN_START_VERSION,
    START_VERSION,
    STARTUP_DELAY_S,
    DemoRow,
    DemoSettings,
    DemoTraffic,
    Scenario,
    create_database,
    label,
    next_release,
)
from zdu_local.platform import LocalPlatform

__all__ = ["demo_config", "run_demo"]


def demo_config(
    scenario: Scenario,
    state_dir: Path,
    from_version: Version,
    to_version: Version,
    traffic: DemoTraffic,
    replicas: int,
    database: Path,
) -> dict[str, Any]:
    """The configuration of ``scenario``'s upgrade of a local demo fleet (for :func:`load_config`)."""
    config: dict[str, Any] = {
        "target": {"name": "demo", "platform": "local", "version": str(from_version)},
        "platform": {
            "replicas": replicas,
            "command": demo_app_command(STARTUP_DELAY_S, "--database", str(database)),
            # a drain waits for requests and long downloads in flight (not websockets)
            "drain_timeout": traffic.stream_seconds + 5.0,
            "stop_grace": traffic.stream_seconds + 10.0,
            # evidence is taken with one attempt per request: nginx retries nothing
            "retry": False,
            **scenario.platform,
        },
        "release": {"version": str(to_version)},
        "strategy": {"name": scenario.strategy, "layers": list(scenario.layers), **scenario.options},
        "probes": [traffic.probe()],
        "upgrade": {"state_dir": str(state_dir)},
    }
    if scenario.fault:
        platform = config["platform"]
        platform["command"] = [
            *platform["command"],
            "--fault",
            scenario.fault,
            "--fault-version",
            str(to_version),
        ]
        config["probes"] = [traffic.bad_release().probe(gating=True)]
    if scenario.migrations != "none":
        config["migrations"] = {
            "name": "sql",
            "database": f"sqlite://{database}",
            "path": str(DEMO_MIGRATIONS),
            # 16.6's post-deployment migrations queue a batched background migration; the fleet's
            # worker runs it in a few seconds, and the upgrade ends only once it has finished
            "wait_for_background_migrations": True,
            "background_migrations_timeout": 120.0,
        }
    return config


def run_demo(
    scenarios: Iterable[Scenario],
    *,
    manager: ZduPluginManager,
    traffic: DemoTraffic | None = None,
    replicas: int = 3,
    console: Console | None = None,
    journal: Journal | None = None,
) -> list[DemoRow]:
    """Run the scenarios under traffic and return their rows, in the order given.

    The scenarios without migrations share one fleet, each going one minor version further; every
    scenario with migrations gets a fresh fleet and database. Every fleet is stopped at the end.
    """
    console = console or stderr_console()
    scenarios = list(scenarios)
    settings = DemoSettings(
        manager=manager, traffic=traffic or DemoTraffic(), replicas=replicas, console=console, journal=journal
    )
    rows: dict[str, DemoRow] = {}
    observer = ProgressObserver(console)
    manager.register(observer, name="zdu-demo-progress")
    try:
        with interruptible(settings.cancel, console), WarningSummary().holding(console):
            chain = [s for s in scenarios if s.migrations == "none" and s.strategy != "get"]
            if chain:
                rows.update(_run_fleet(chain, settings, CHAIN_START_VERSION))
            for scenario in scenarios:
                if scenario.migrations != "none" and not settings.cancel.is_set():
                    rows.update(_run_fleet([scenario], settings, START_VERSION))
            elsewhere = [s for s in scenarios if s.strategy == "get"]
            if elsewhere and not settings.cancel.is_set():
                rows.update(_run_elsewhere(elsewhere, settings))
    finally:
        manager.unregister(observer)
    return [rows[s.key] for s in scenarios if s.key in rows]


def _run_fleet(scenarios: list[Scenario], settings: DemoSettings, start: Version) -> dict[str, DemoRow]:
    """Start a fleet at ``start`` with its database, upgrade it by each scenario in turn, stop it."""
    console = settings.console
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-demo-"))
    database = state_dir / "gitlab.sqlite"
    version = start

    def config_of(scenario: Scenario, from_version: Version) -> Any:
        raw = demo_config(
            scenario,
            state_dir,
            from_version,
            next_release(from_version),
            settings.traffic,
            settings.replicas,
            database,
        )
        return load_config(raw, settings.manager)

    first = config_of(scenarios[0], version)
    platform = LocalPlatform(first.platform.options, PlatformEnv(first.target, first.target_state_dir))
    rows: dict[str, DemoRow] = {}
    worker: ProcessIdentity | None = None
    try:
        create_database(database, version, settings.manager)
        # the fleet's background worker (GitLab's Sidekiq runs batched background migrations)
        worker = spawn(
            [sys.executable, "-m", "zdu_demo.demo_worker", "--database", str(database)],
            dict(os.environ),
            state_dir / "logs" / "worker.log",
        )
        console.print(f"starting {settings.replicas} demo-app instances of {version} behind nginx …")
        url = platform.up(version)
        console.print(f"the fleet serves at {url}")
        for scenario in scenarios:
            if settings.cancel.is_set():
                break
            config = config_of(scenario, version)
            traffic = settings.traffic
            console.print(
                f"[bold]{label(scenario)}[/bold]: {version} -> {config.release.version} with "
                f"{traffic.rps:g} probe requests/s, {traffic.streams} long downloads and "
                f"{traffic.sockets} websockets"
            )
            rows[scenario.key] = settings.run_upgrade(
                scenario,
                config,
                url,
                bool(config.platform.options.retry),
                unsafe_run_post_migrations_before_rollout=scenario.migrations == "post-first",
            )
            if not scenario.fault:  # a bad release rolled back: the fleet stays where it was
                version = config.release.version
    finally:
        console.print("stopping the fleet …")
        if worker is not None:
            stop_processes([worker], 5.0)
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    return rows


def _run_elsewhere(scenarios: list[Scenario], settings: DemoSettings) -> dict[str, DemoRow]:
    """Have other platforms' plugins run ``scenarios`` (``get``: a GET-like fleet), by the demo's hook."""
    manager = settings.manager
    caller = getattr(manager.hook, "zdu_demo_run_scenarios", None)
    if caller is None or caller.spec is None:  # like pytest_addhooks: the demo's hook, added when used
        manager.add_hookspecs(hookspecs)
    rows: dict[str, DemoRow] = {}
    for result in manager.hook.zdu_demo_run_scenarios(
        scenarios=scenarios, settings=settings, start=CHAIN_START_VERSION, startup_delay=STARTUP_DELAY_S
    ):
        rows.update(result or {})
    return rows
