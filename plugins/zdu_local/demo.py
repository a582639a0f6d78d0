"""``zdu demo``: local fleets upgraded by each strategy in turn under probe traffic.

A fleet (3 demo-app instances behind nginx by default) starts at 16.5.0 and each scenario upgrades
it one minor version further, while the ``http`` probe sends browser-like traffic through the router.
Scenarios with migrations each get a fresh fleet at 16.5.0 sharing a SQLite database at 16.5's
schema, upgraded to 16.6.0, whose migrations split a column rename in two. The probe runs in dry-run
mode, so it records and never gates: every scenario runs to its end and the table shows what users
would have seen. Every process the demo starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table

from zdu.cli import ProgressObserver, interruptible
from zdu.config import load_config
from zdu.errors import ZduError
from zdu.migrations import MigrationEnv, Stage
from zdu.model import Report, UpgradeStatus, Version
from zdu.platform import PlatformEnv
from zdu.registry import ZduPluginManager
from zdu.secret import Secret
from zdu.upgrade import Upgrade
from zdu_local.config import demo_app_command
from zdu_local.demo_app import DEMO_BASE_SCHEMA, DEMO_MIGRATIONS
from zdu_local.platform import LocalPlatform

__all__ = ["DEFAULT_SCENARIOS", "DemoRow", "Scenario", "render_table", "run_demo"]

#: The version the demo fleet starts at; each scenario goes one minor further.
START_VERSION = Version.parse("16.5.0")

#: Seconds a demo-app instance takes to start (GitLab's Puma takes far longer; this keeps the demo short).
STARTUP_DELAY_S = 1.0


#: How a scenario runs migrations: none, in zdu's order, or post-deployment ones first (unsafe, to
#: show the damage the order prevents).
MIGRATIONS = ("none", "ordered", "post-first")


@attrs.frozen
class Scenario:
    """One row of the demo: a strategy, its layers and options, and how migrations run."""

    key: str
    strategy: str
    layers: tuple[str, ...] = ()
    options: dict[str, Any] = attrs.field(factory=dict)
    migrations: str = attrs.field(default="none", validator=attrs.validators.in_(MIGRATIONS))
    #: what tells two scenarios of one strategy apart (``get``: ``no drain`` and ``drain``)
    variant: str = ""


_ROLLING = {"max_surge": 1, "max_unavailable": 0}
_BLUE_GREEN = {"scale_down_delay": 3.0, "preview_seconds": 2.0}

#: The plain strategies first, then each with a traffic layer that cures the asset hazard.
DEFAULT_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("recreate", "recreate"),
    Scenario("rolling", "rolling", options=_ROLLING),
    Scenario("blue-green", "blue-green", options=_BLUE_GREEN),
    Scenario("rolling+sticky-nginx", "rolling", ("sticky-nginx",), options=_ROLLING),
    Scenario("rolling+assets-shim", "rolling", ("assets-shim",), options=_ROLLING),
    Scenario("blue-green+sticky-nginx", "blue-green", ("sticky-nginx",), options=_BLUE_GREEN),
    Scenario(
        "rolling+sticky-nginx+sql", "rolling", ("sticky-nginx",), options=_ROLLING, migrations="ordered"
    ),
    Scenario(
        "rolling+sticky-nginx+sql-post-first",
        "rolling",
        ("sticky-nginx",),
        options=_ROLLING,
        migrations="post-first",
    ),
    # a GET-like fleet behind HAProxy (zdu[get], haproxy): GET's own way, then with zdu's drain
    Scenario("get-no-drain", "get", options={"drain": False}, variant="no drain"),
    Scenario("get-drain", "get", options={"drain": True}, variant="drain"),
)


@attrs.frozen
class DemoRow:
    """What the probe measured during one scenario."""

    strategy: str
    layers: tuple[str, ...]
    migrations: str
    from_version: str
    to_version: str
    status: str
    requests: int
    failed: int
    asset_errors: int
    longest_outage_s: float
    p99_ms: float
    achieved_rps: float
    duration_s: float
    variant: str = ""

    @classmethod
    def from_report(cls, scenario: Scenario, report: Report) -> DemoRow:
        """The row of a scenario's report."""
        return cls(
            strategy=scenario.strategy,
            layers=scenario.layers,
            migrations=scenario.migrations,
            from_version=report.from_version,
            to_version=report.to_version,
            status=report.status.value,
            requests=int(report.value("requests")),
            failed=int(report.value("failed_requests")),
            asset_errors=int(report.value("asset_errors")),
            longest_outage_s=round(report.value("longest_outage_s"), 3),
            p99_ms=round(report.value("p99_ms"), 1),
            achieved_rps=round(report.value("achieved_rps"), 1),
            duration_s=round(report.duration_seconds, 2),
            variant=scenario.variant,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``zdu demo --json`` prints."""
        return {
            "strategy": self.strategy,
            "layers": list(self.layers),
            "migrations": self.migrations,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "status": self.status,
            "requests": self.requests,
            "failed": self.failed,
            "asset_errors": self.asset_errors,
            "longest_outage_s": self.longest_outage_s,
            "p99_ms": self.p99_ms,
            "achieved_rps": self.achieved_rps,
            "duration_s": self.duration_s,
            "variant": self.variant,
        }


def _config(
    scenario: Scenario,
    state_dir: Path,
    from_version: Version,
    to_version: Version,
    rps: float,
    clients: int,
    replicas: int,
    database: Path | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "target": {"name": "demo", "platform": "local", "version": str(from_version)},
        "platform": {
            "replicas": replicas,
            "command": demo_app_command(STARTUP_DELAY_S),
            "drain_timeout": 10.0,
            "stop_grace": 5.0,
        },
        "release": {"version": str(to_version)},
        "strategy": {"name": scenario.strategy, "layers": list(scenario.layers), **scenario.options},
        "probes": [{"name": "http", "rps": rps, "clients": clients, "dry_run": True}],
        "upgrade": {"state_dir": str(state_dir)},
    }
    if database is not None:
        config["platform"]["command"] += ["--database", str(database)]
        config["migrations"] = {
            "name": "sql",
            "database": f"sqlite://{database}",
            "path": str(DEMO_MIGRATIONS),
        }
    return config


def _next_minor(version: Version) -> Version:
    return Version.parse(f"{version.major}.{version.minor + 1}.0")


def run_demo(
    scenarios: Iterable[Scenario],
    *,
    manager: ZduPluginManager,
    rps: float = 150.0,
    clients: int = 20,
    replicas: int = 3,
    console: Console | None = None,
) -> list[DemoRow]:
    """Run the scenarios under probe traffic and return their rows, in the order given.

    The scenarios without migrations share one fleet, each going one minor version further; every
    scenario with migrations gets a fresh fleet and database. Every fleet is stopped at the end.
    """
    console = console or Console(stderr=True, highlight=False)
    scenarios = list(scenarios)
    settings = _Settings(manager=manager, rps=rps, clients=clients, replicas=replicas, console=console)
    rows: dict[str, DemoRow] = {}
    observer = ProgressObserver(console)
    manager.register(observer, name="zdu-demo-progress")
    try:
        with interruptible(settings.cancel, console):
            chain = [s for s in scenarios if s.migrations == "none" and s.strategy != "get"]
            if chain:
                rows.update(_run_fleet(chain, settings, database=False))
            for scenario in scenarios:
                if scenario.migrations != "none" and not settings.cancel.is_set():
                    rows.update(_run_fleet([scenario], settings, database=True))
            on_get = [s for s in scenarios if s.strategy == "get"]
            if on_get and not settings.cancel.is_set():
                from zdu_get.demo import run_get_scenarios  # noqa: PLC0415 - zdu[get] only when asked

                rows.update(run_get_scenarios(on_get, settings, START_VERSION, STARTUP_DELAY_S))
    finally:
        manager.unregister(observer)
    return [rows[s.key] for s in scenarios if s.key in rows]


@attrs.define
class _Settings:
    manager: ZduPluginManager
    rps: float
    clients: int
    replicas: int
    console: Console
    cancel: threading.Event = attrs.field(factory=threading.Event)


def _run_fleet(scenarios: list[Scenario], settings: _Settings, *, database: bool) -> dict[str, DemoRow]:
    """Start a fleet at 16.5.0, upgrade it by each scenario in turn, stop it."""
    console = settings.console
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-demo-"))
    db_file = state_dir / "gitlab.sqlite" if database else None
    version = START_VERSION

    def config_of(scenario: Scenario, from_version: Version) -> Any:
        raw = _config(
            scenario,
            state_dir,
            from_version,
            _next_minor(from_version),
            settings.rps,
            settings.clients,
            settings.replicas,
            db_file,
        )
        return load_config(raw, settings.manager)

    first = config_of(scenarios[0], version)
    platform = LocalPlatform(first.platform.options, PlatformEnv(first.target, first.target_state_dir))
    rows: dict[str, DemoRow] = {}
    try:
        if db_file is not None:
            _create_database(first, platform, db_file)
        console.print(f"starting {settings.replicas} demo-app instances of {version} behind nginx …")
        console.print(f"the fleet serves at {platform.up(version)}")
        for scenario in scenarios:
            if settings.cancel.is_set():
                break
            config = config_of(scenario, version)
            console.print(
                f"[bold]{_label(scenario)}[/bold]: {version} -> {config.release.version}"
                f" with {settings.rps:g} probe requests/s from {settings.clients} clients"
            )
            upgrade = Upgrade(
                config,
                settings.manager,
                verify_seconds=1.0,
                unsafe_run_post_migrations_before_rollout=scenario.migrations == "post-first",
            )
            upgrade.cancel = settings.cancel
            report = upgrade.run()
            rows[scenario.key] = DemoRow.from_report(scenario, report)
            if report.status is not UpgradeStatus.SUCCEEDED:
                raise ZduError(f"demo scenario {scenario.key} did not complete: {report.error}")
            version = config.release.version
    finally:
        console.print("stopping the fleet …")
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    return rows


def _create_database(config: Any, platform: LocalPlatform, database: Path) -> None:
    """A database as 16.5 left it: the demo migrations up to 16.5's schema."""
    from zdu_migrations.sql import SqlRunner, SqlRunnerConfig  # noqa: PLC0415 - only demos with migrations

    env = MigrationEnv(target=config.target, platform=platform, state_dir=config.target_state_dir)
    runner = SqlRunner(SqlRunnerConfig(database=Secret(f"sqlite://{database}"), path=DEMO_MIGRATIONS), env)
    runner.apply(Stage.PRE, through=DEMO_BASE_SCHEMA)


def _label(scenario: Scenario | DemoRow) -> str:
    parts = [scenario.strategy, *scenario.layers, *([scenario.variant] if scenario.variant else [])]
    if scenario.migrations == "ordered":
        parts.append("sql migrations")
    elif scenario.migrations == "post-first":
        parts.append("sql migrations, post first (unsafe)")
    return " + ".join(parts)


def render_table(rows: Sequence[DemoRow]) -> str:
    """The demo's table, as text."""
    table = Table(title="zdu demo: what users saw during each upgrade")
    for header in (
        "strategy",
        "versions",
        "requests",
        "failed",
        "asset errors",
        "longest outage",
        "p99",
        "req/s",
        "duration",
    ):
        table.add_column(
            header, justify="left" if header in ("strategy", "versions") else "right", no_wrap=True
        )
    for row in rows:
        table.add_row(
            _label(row),
            f"{row.from_version} -> {row.to_version}",
            str(row.requests),
            str(row.failed),
            str(row.asset_errors),
            f"{row.longest_outage_s:.2f}s",
            f"{row.p99_ms:.0f}ms",
            f"{row.achieved_rps:.0f}",
            f"{row.duration_s:.1f}s",
        )
    console = Console(width=200, file=io.StringIO())
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return str(text)
