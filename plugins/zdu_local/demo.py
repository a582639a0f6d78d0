"""``zdu demo``: one local fleet, upgraded by each strategy in turn under probe traffic.

The fleet (3 demo-app instances behind nginx by default) starts at 16.5.0 and each scenario upgrades
it one minor version further, while the ``http`` probe sends browser-like traffic through the router.
The probe runs in dry-run mode, so it records and never gates: every scenario runs to its end and the
table shows what users would have seen. Every process the demo starts is stopped at the end, also on
Ctrl-C.
"""

from __future__ import annotations

import io
import shutil
import sys
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
from zdu.model import Report, UpgradeStatus, Version
from zdu.platform import PlatformEnv
from zdu.registry import ZduPluginManager
from zdu.upgrade import Upgrade
from zdu_local.platform import LocalPlatform

__all__ = ["DEFAULT_SCENARIOS", "DemoRow", "Scenario", "render_table", "run_demo"]

#: The version the demo fleet starts at; each scenario goes one minor further.
START_VERSION = Version.parse("16.5.0")

#: Seconds a demo-app instance takes to start (GitLab's Puma takes far longer; this keeps the demo short).
STARTUP_DELAY_S = 1.0


@attrs.frozen
class Scenario:
    """One row of the demo: a strategy, its layers and options."""

    key: str
    strategy: str
    layers: tuple[str, ...] = ()
    options: dict[str, Any] = attrs.field(factory=dict)


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
)


@attrs.frozen
class DemoRow:
    """What the probe measured during one scenario."""

    strategy: str
    layers: tuple[str, ...]
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

    @classmethod
    def from_report(cls, scenario: Scenario, report: Report) -> DemoRow:
        """The row of a scenario's report."""
        return cls(
            strategy=scenario.strategy,
            layers=scenario.layers,
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
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``zdu demo --json`` prints."""
        return {
            "strategy": self.strategy,
            "layers": list(self.layers),
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
        }


def _config(
    scenario: Scenario,
    state_dir: Path,
    from_version: Version,
    to_version: Version,
    rps: float,
    clients: int,
    replicas: int,
) -> dict[str, Any]:
    return {
        "target": {"name": "demo", "platform": "local", "version": str(from_version)},
        "platform": {
            "replicas": replicas,
            "command": [
                sys.executable,
                "-m",
                "zdu_local.demo_app",
                "--version",
                "{version}",
                "--port",
                "{port}",
                "--host",
                "{host}",
                "--startup-delay",
                str(STARTUP_DELAY_S),
            ],
            "drain_timeout": 10.0,
            "stop_grace": 5.0,
        },
        "release": {"version": str(to_version)},
        "strategy": {"name": scenario.strategy, "layers": list(scenario.layers), **scenario.options},
        "probes": [{"name": "http", "rps": rps, "clients": clients, "dry_run": True}],
        "upgrade": {"state_dir": str(state_dir)},
    }


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
    """Start a fleet, upgrade it once per scenario under probe traffic, stop it; return the rows."""
    console = console or Console(stderr=True, highlight=False)
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-demo-"))
    scenarios = list(scenarios)
    rows: list[DemoRow] = []
    version = START_VERSION
    first = load_config(
        _config(scenarios[0], state_dir, version, _next_minor(version), rps, clients, replicas), manager
    )
    platform = LocalPlatform(first.platform.options, PlatformEnv(first.target, first.target_state_dir))
    cancel = threading.Event()
    observer = ProgressObserver(console)
    manager.register(observer, name="zdu-demo-progress")
    try:
        with interruptible(cancel, console):
            console.print(f"starting {replicas} demo-app instances of {version} behind nginx …")
            url = platform.up(version)
            console.print(f"the fleet serves at {url}")
            for scenario in scenarios:
                if cancel.is_set():
                    break
                target_version = _next_minor(version)
                console.print(
                    f"[bold]{' + '.join((scenario.strategy, *scenario.layers))}[/bold]: "
                    f"{version} -> {target_version}"
                    f" with {rps:g} probe requests/s from {clients} clients"
                )
                config = load_config(
                    _config(scenario, state_dir, version, target_version, rps, clients, replicas), manager
                )
                upgrade = Upgrade(config, manager, verify_seconds=1.0)
                upgrade.cancel = cancel
                report = upgrade.run()
                rows.append(DemoRow.from_report(scenario, report))
                if report.status is not UpgradeStatus.SUCCEEDED:
                    raise ZduError(f"demo scenario {scenario.key} did not complete: {report.error}")
                version = target_version
    finally:
        manager.unregister(observer)
        console.print("stopping the fleet …")
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    return rows


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
        table.add_column(header, justify="left" if header in ("strategy", "versions") else "right")
    for row in rows:
        table.add_row(
            " + ".join((row.strategy, *row.layers)),
            f"{row.from_version} -> {row.to_version}",
            str(row.requests),
            str(row.failed),
            str(row.asset_errors),
            f"{row.longest_outage_s:.2f}s",
            f"{row.p99_ms:.0f}ms",
            f"{row.achieved_rps:.0f}",
            f"{row.duration_s:.1f}s",
        )
    console = Console(width=140, file=io.StringIO())
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return str(text)
