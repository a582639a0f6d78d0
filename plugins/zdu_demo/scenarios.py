"""The demo's framework, shared by the platforms' demos: scenarios, traffic, rows, the table.

A scenario names a strategy (and its layers, options, migrations and role); :class:`DemoTraffic`
is what the probe sends; :class:`DemoSettings` runs one upgrade under the probe and wrk (the
independent cross-check, :mod:`zdu_demo.crosscheck`) and turns its report into a :class:`DemoRow`;
:func:`render_table` prints the rows. The local plugin's ``zdu demo`` runs the scenarios on local
fleets (:mod:`zdu_local.demo`); the ``get`` plugin runs its own on a GET-like fleet.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import attrs
from rich.console import Console
from rich.table import Table

from zdu.plugins import (
    RESTORED_EVENT,
    Event,
    Journal,
    MigrationEnv,
    Platform,
    Report,
    Stage,
    Target,
    Upgrade,
    UpgradeStatus,
    Version,
    ZduError,
    ZduPluginManager,
    get_plugin_manager,
    next_minor,
    structure,
)
from zdu_demo.crosscheck import IndependentCount, IndependentLoad, WrkMissing, find_wrk
from zdu_demo.demo_app import DEMO_BASE_SCHEMA, DEMO_MIGRATIONS

__all__ = [
    "BAD_RELEASE_FAULT",
    "CHAIN_START_VERSION",
    "DEFAULT_SCENARIOS",
    "MIGRATIONS",
    "ROLES",
    "STARTUP_DELAY_S",
    "START_VERSION",
    "DemoRow",
    "DemoSettings",
    "DemoTraffic",
    "Scenario",
    "blast_radius",
    "create_database",
    "create_mixed_database",
    "label",
    "next_release",
    "render_table",
]

#: The version the fleets with migrations start at (16.5's schema); they go to 16.6.0.
START_VERSION = Version.parse("16.5.0")
#: The version the fleet of the scenarios without migrations starts at (its database as 16.6 left it).
CHAIN_START_VERSION = Version.parse("16.6.0")

#: Seconds a demo-app instance takes to start (GitLab's Puma takes far longer; this keeps the demo short).
STARTUP_DELAY_S = 1.0


#: How a scenario runs migrations: none, in zdu's order, or post-deployment ones first (unsafe, to
#: show the damage the order prevents).
MIGRATIONS = ("none", "ordered", "post-first")
#: What a scenario is for: a ``safe`` upgrade whose zeros are claimed; a negative ``control`` (the
#: same instruments must see failures there); an ``unsafe`` order shown for its damage; a
#: ``blast-radius`` measure: a bad release (``fault``) that the gating probe must catch and roll back,
#: with the failures users saw before the rollback completed.
ROLES = ("safe", "control", "unsafe", "blast-radius")
#: The fault of the demo's bad releases: the new version answers 500 to 30% of requests.
BAD_RELEASE_FAULT = "5xx-share:0.3"


@attrs.frozen
class Scenario:
    """One row of the demo: a strategy, its layers and options, how migrations run, and its role."""

    key: str
    strategy: str
    layers: tuple[str, ...] = ()
    options: dict[str, Any] = attrs.field(factory=dict)
    migrations: str = attrs.field(default="none", validator=attrs.validators.in_(MIGRATIONS))
    #: what tells two scenarios of one strategy apart (``rolling``: ``no drain``)
    variant: str = ""
    #: options of the ``[platform]`` table beyond the demo's own (``drain = false`` for ``no drain``)
    platform: dict[str, Any] = attrs.field(factory=dict)
    role: str = attrs.field(default="safe", validator=attrs.validators.in_(ROLES))
    #: a demo-app fault the release (only) has (``--fault``), such as :data:`BAD_RELEASE_FAULT`: the
    #: probe then gates (no dry run) and the scenario must end rolled back
    fault: str = ""


_ROLLING = {"max_surge": 1, "max_unavailable": 0}
_BLUE_GREEN = {"scale_down_delay": 3.0, "preview_seconds": 2.0}
_CANARY = {
    "steps": [{"weight": 10, "pause": "1s"}, {"weight": 50, "pause": "1s"}, {"weight": 100}],
    "preview_seconds": 2.0,
}


def _bad_release(strategy: str, options: dict[str, Any]) -> Scenario:
    """``strategy`` rolling out a release that answers 500 to a share of requests, under a gating probe."""
    return Scenario(
        f"{strategy}-bad-release",
        strategy,
        options=options,
        variant="bad release",
        role="blast-radius",
        fault=BAD_RELEASE_FAULT,
    )


#: The negative controls first, then the plain strategies, then each with a traffic layer that
#: cures the asset hazard, then migrations, then a GET-like fleet behind HAProxy.
DEFAULT_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("recreate", "recreate", role="control"),
    Scenario(
        "rolling-no-drain",
        "rolling",
        options=_ROLLING,
        variant="no drain",
        platform={"drain": False},
        role="control",
    ),
    Scenario("rolling", "rolling", options=_ROLLING),
    Scenario("blue-green", "blue-green", options=_BLUE_GREEN),
    Scenario("canary", "canary", options=_CANARY),
    Scenario("rolling+sticky-nginx", "rolling", ("sticky-nginx",), options=_ROLLING),
    Scenario("rolling+assets-shim", "rolling", ("assets-shim",), options=_ROLLING),
    Scenario("blue-green+sticky-nginx", "blue-green", ("sticky-nginx",), options=_BLUE_GREEN),
    # blast radius: a bad release per strategy, caught by the gating probe and rolled back
    _bad_release("rolling", _ROLLING),
    _bad_release("blue-green", _BLUE_GREEN),
    _bad_release("canary", _CANARY),
    Scenario(
        "rolling+sticky-nginx+sql", "rolling", ("sticky-nginx",), options=_ROLLING, migrations="ordered"
    ),
    Scenario(
        "rolling+sticky-nginx+sql-post-first",
        "rolling",
        ("sticky-nginx",),
        options=_ROLLING,
        migrations="post-first",
        role="unsafe",
    ),
    # a GET-like fleet behind HAProxy (zdu[get], haproxy): GET's own way, then with zdu's drain
    Scenario("get-no-drain", "get", options={"drain": False}, variant="no drain", role="control"),
    Scenario("get-drain", "get", options={"drain": True}, variant="drain"),
)


@attrs.frozen
class DemoTraffic:
    """What the probe sends in every scenario (and whether wrk cross-checks it).

    :ivar rps: the probe's offered rate of scheduled requests (page views, API reads, writes).
    :ivar clients: browser-like visitors, each with its own cookies.
    :ivar mix: the share of ``rps`` of each kind.
    :ivar streams: long downloads in flight at any time, each ``stream_seconds`` long.
    :ivar sockets: websockets held across each upgrade.
    :ivar independent: whether wrk sends its own traffic through the same router.
    """

    rps: float = 200.0
    clients: int = 20
    mix: dict[str, float] = attrs.field(factory=lambda: {"page": 0.5, "api": 0.3, "write": 0.2})
    streams: int = 5
    stream_seconds: float = 3.0
    sockets: int = 5
    independent: bool = True

    def bad_release(self) -> DemoTraffic:
        """The traffic of a bad-release scenario: requests only (no streams, no websockets), at most 100/s.

        Its figure is how many requests users saw fail; its probe gates, and the strategy's analysis
        runs a second one against the preview route at the same time, so the load is kept modest.
        """
        return attrs.evolve(self, rps=min(self.rps, 100.0), streams=0, sockets=0)

    def probe(self, *, gating: bool = False) -> dict[str, Any]:
        """The ``[[probes]]`` table of the demo's http probe (dry run: it records, never gates).

        ``gating``: the probe gates instead (a bad-release scenario): one failed measurement of the
        default thresholds (no failed request, no lost write, ...) fails the gate and rolls back.
        Asset errors do not gate there: they are the mixed-version hazard the traffic layers cure, not
        the bad release, and the time to the decision is measured from the first failed request.
        """
        return {
            "name": "http",
            "rps": self.rps,
            "clients": self.clients,
            "mix": dict(self.mix),
            "streams": self.streams,
            "stream_seconds": self.stream_seconds,
            "sockets": self.sockets,
            "dry_run": not gating,
            **({"max_asset_errors": None} if gating else {}),
        }


@attrs.frozen
class DemoRow:
    """What the instruments measured during one scenario."""

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
    role: str = "safe"
    router_retries: bool = False
    offered_rps: float = 0.0
    writes: int = 0
    failed_writes: int = 0
    lost_writes: int = 0
    streams: int = 0
    cut_streams: int = 0
    sockets: int = 0
    dropped_sockets: int = 0
    slow_requests: int = 0
    failure_rate_upper_95: float = 1.0
    independent: IndependentCount | None = None
    #: bad-release scenarios: failed requests the probe's users saw before the rollback completed
    user_failed: int | None = None
    #: seconds from the first failure users saw to the decision to roll back
    detect_s: float | None = None
    #: seconds from the decision to roll back to only the old version serving users
    restore_s: float | None = None
    #: the upgrade's id in the demo's journal (``zdu report ID``)
    upgrade_id: str = ""

    @classmethod
    def from_report(
        cls,
        scenario: Scenario,
        report: Report,
        *,
        router_retries: bool,
        independent: IndependentCount | None,
        events: Sequence[Event] = (),
    ) -> DemoRow:
        """The row of a scenario's report, with what the router did and what wrk counted.

        ``events``: the upgrade's journal, read for a bad-release scenario's blast radius.
        """

        def count(name: str) -> int:
            return int(report.value(name))

        return cls(
            strategy=scenario.strategy,
            layers=scenario.layers,
            migrations=scenario.migrations,
            from_version=report.from_version,
            to_version=report.to_version,
            status=report.status.value,
            requests=count("requests"),
            failed=count("failed_requests"),
            asset_errors=count("asset_errors"),
            longest_outage_s=round(report.value("longest_outage_s"), 3),
            p99_ms=round(report.value("p99_ms"), 1),
            achieved_rps=round(report.value("achieved_rps"), 1),
            duration_s=round(report.duration_seconds, 2),
            variant=scenario.variant,
            role=scenario.role,
            router_retries=router_retries,
            offered_rps=round(report.value("offered_rps"), 1),
            writes=count("writes"),
            failed_writes=count("failed_writes"),
            lost_writes=count("lost_writes"),
            streams=count("streams"),
            cut_streams=count("cut_streams"),
            sockets=count("sockets"),
            dropped_sockets=count("dropped_sockets"),
            slow_requests=count("slow_requests"),
            failure_rate_upper_95=report.value("failure_rate_upper_95", 1.0),
            independent=independent,
            **(blast_radius(report, events) if scenario.fault else {}),
            upgrade_id=report.upgrade_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``zdu demo --json`` prints."""
        return {
            "strategy": self.strategy,
            "layers": list(self.layers),
            "migrations": self.migrations,
            "variant": self.variant,
            "role": self.role,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "status": self.status,
            "router_retries": self.router_retries,
            "offered_rps": self.offered_rps,
            "achieved_rps": self.achieved_rps,
            "requests": self.requests,
            "failed": self.failed,
            "asset_errors": self.asset_errors,
            "writes": self.writes,
            "failed_writes": self.failed_writes,
            "lost_writes": self.lost_writes,
            "streams": self.streams,
            "cut_streams": self.cut_streams,
            "sockets": self.sockets,
            "dropped_sockets": self.dropped_sockets,
            "slow_requests": self.slow_requests,
            "longest_outage_s": self.longest_outage_s,
            "p99_ms": self.p99_ms,
            "failure_rate_upper_95": self.failure_rate_upper_95,
            "duration_s": self.duration_s,
            "independent": None if self.independent is None else self.independent.to_dict(),
            "user_failed": self.user_failed,
            "detect_s": self.detect_s,
            "restore_s": self.restore_s,
            "upgrade_id": self.upgrade_id,
        }


def blast_radius(report: Report, events: Sequence[Event]) -> dict[str, Any]:
    """``user_failed``, ``detect_s`` and ``restore_s`` of a rolled-back upgrade, from its report and journal.

    ``user_failed``: the requests the upgrade's own probe (users, through the router; not the preview
    analysis) saw fail; the probe stops once the rollback is done. ``detect_s``: from the end of the
    first of them to the decision to roll back (journal ``rollback``); None when users saw none.
    ``restore_s``: from that decision to only the old version serving users (journal ``restored``).
    """
    decided = next((e.at for e in events if e.kind == "rollback"), None)
    restored = next((e.at for e in events if e.kind == RESTORED_EVENT), None)
    first = report.value("first_failure_at", 0.0)
    return {
        "user_failed": int(report.value("failed_requests")),
        "detect_s": round(decided - first, 3) if decided is not None and first > 0 else None,
        "restore_s": round(restored - decided, 3) if decided is not None and restored is not None else None,
    }


def next_release(version: Version) -> Version:
    """The first release of the minor series after ``version``'s (16.11 is followed by 17.0)."""
    major, minor = next_minor(version)
    return Version.parse(f"{major}.{minor}.0")


@attrs.define
class DemoSettings:
    """What every fleet of one demo run shares: plugins, traffic, size, output, the cancel flag."""

    manager: ZduPluginManager
    traffic: DemoTraffic
    replicas: int
    console: Console
    cancel: threading.Event = attrs.field(factory=threading.Event)
    _warned_wrk: bool = False
    #: where the upgrades are recorded (default: each fleet's own, removed with it)
    journal: Journal | None = None

    @contextmanager
    def independent(self, url: str) -> Iterator[Callable[[], IndependentCount | None]]:
        """Run wrk through ``url`` for the duration of the block; the callable gives its count after.

        Without wrk installed (or with ``traffic.independent`` off) the count is None, said once.
        """
        load: IndependentLoad | None = None
        if self.traffic.independent:
            try:
                find_wrk()
                # about 160 requests/s: enough that a control's seconds of failures reach wrk too
                load = IndependentLoad(url, connections=8, delay_ms=50)
            except WrkMissing as error:
                if not self._warned_wrk:
                    self.console.print(f"[yellow]no independent cross-check[/yellow]: {error}")
                    self._warned_wrk = True
        if load is None:
            yield lambda: None
            return
        load.start()
        try:
            yield lambda: load.result
        finally:
            load.stop()

    def run_upgrade(
        self,
        scenario: Scenario,
        config: Any,
        url: str,
        router_retries: bool,
        **options: Any,
    ) -> DemoRow:
        """Upgrade as ``config`` says under the probe and wrk; raise unless it succeeded."""
        upgrade = Upgrade(config, self.manager, journal=self.journal, verify_seconds=1.0, **options)
        upgrade.cancel = self.cancel
        with self.independent(url) as independent:
            report = upgrade.run()
        events = upgrade.journal.events(report.upgrade_id) if scenario.fault else ()
        row = DemoRow.from_report(
            scenario, report, router_retries=router_retries, independent=independent(), events=events
        )
        expected = UpgradeStatus.ROLLED_BACK if scenario.fault else UpgradeStatus.SUCCEEDED
        if report.status is not expected:
            raise ZduError(
                f"demo scenario {scenario.key} ended {report.status.value}, not {expected.value}: "
                f"{report.error}"
            )
        return row


def create_database(database: Path, version: Version, manager: ZduPluginManager | None = None) -> None:
    """Create the demo's SQLite database as ``version`` left it.

    16.5.0: the demo migrations up to 16.5's schema; a later version: every demo migration, regular
    and post-deployment. The ``sql`` migration runner of ``manager`` (default: the installed
    plugins) applies them.
    """
    runner = _demo_runner(database, version, manager)
    if version <= START_VERSION:
        runner.apply(Stage.PRE, through=DEMO_BASE_SCHEMA)
    else:
        runner.apply(Stage.PRE)
        runner.apply(Stage.POST)


def create_mixed_database(database: Path, manager: ZduPluginManager | None = None) -> None:
    """Create the demo's database as an upgrade to 16.6 leaves it between its two stages.

    16.6's regular migrations are applied, its post-deployment ones are not: both 16.5 and 16.6 read
    it, so a fleet of either (or both) shares it without migrations of its own.
    """
    _demo_runner(database, START_VERSION, manager).apply(Stage.PRE)


def _demo_runner(database: Path, version: Version, manager: ZduPluginManager | None) -> Any:
    """The ``sql`` migration runner over the demo's migrations and ``database``, from the plugin manager."""
    manager = manager or get_plugin_manager()
    record = manager.migration_runner("sql")
    options = structure(
        {"database": f"sqlite://{database}", "path": str(DEMO_MIGRATIONS)}, record.config, "migrations"
    )
    env = MigrationEnv(
        target=Target(name="demo", platform="local", version=version),
        # the sql runner reads its files and the database only: it never asks the platform
        platform=cast(Platform, None),
        state_dir=database.parent,
    )
    return record.factory(options, env)


def label(scenario: Scenario | DemoRow) -> str:
    """The scenario's name in the table and the progress: strategy, layers, variant, migrations."""
    parts = [scenario.strategy, *scenario.layers, *([scenario.variant] if scenario.variant else [])]
    if scenario.migrations == "ordered":
        parts.append("sql migrations")
    elif scenario.migrations == "post-first":
        parts.append("sql migrations, post first (unsafe)")
    return " + ".join(parts)


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}s"


def _independent(row: DemoRow) -> str:
    return "-" if row.independent is None else f"{row.independent.failed}/{row.independent.requests}"


#: The table's columns: a header and the cell of a row.
_COLUMNS: tuple[tuple[str, Callable[[DemoRow], str]], ...] = (
    ("scenario", label),
    ("role", lambda row: row.role),
    ("versions", lambda row: f"{row.from_version} -> {row.to_version}"),
    ("requests", lambda row: str(row.requests)),
    ("failed", lambda row: str(row.failed)),
    ("asset errors", lambda row: str(row.asset_errors)),
    ("writes lost/failed", lambda row: f"{row.lost_writes}/{row.failed_writes} of {row.writes}"),
    ("streams cut", lambda row: f"{row.cut_streams} of {row.streams}"),
    ("sockets dropped", lambda row: f"{row.dropped_sockets} of {row.sockets}"),
    ("outage", lambda row: f"{row.longest_outage_s:.2f}s"),
    ("p99", lambda row: f"{row.p99_ms:.0f}ms"),
    ("offered/achieved", lambda row: f"{row.offered_rps:.0f}/{row.achieved_rps:.0f}"),
    ("fail rate ≤ (95%)", lambda row: f"{row.failure_rate_upper_95:.2%}"),
    ("wrk failed", _independent),
    ("users failed", lambda row: "-" if row.user_failed is None else str(row.user_failed)),
    ("detect", lambda row: _seconds(row.detect_s) if row.user_failed is not None else "-"),
    ("restore", lambda row: _seconds(row.restore_s) if row.user_failed is not None else "-"),
    ("duration", lambda row: f"{row.duration_s:.1f}s"),
)


def render_table(rows: Sequence[DemoRow]) -> str:
    """The demo's table, as text."""
    table = Table(title="zdu demo: what users saw during each upgrade (router retries off)")
    for header, _cell in _COLUMNS:
        table.add_column(
            header, justify="left" if header in ("scenario", "role", "versions") else "right", no_wrap=True
        )
    for row in rows:
        table.add_row(*(cell(row) for _header, cell in _COLUMNS))
    console = Console(width=360, file=io.StringIO())
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return str(text)
