"""A real fleet for the demo: local cells, each demo-app instances behind its own nginx, in rings.

:func:`write_local_fleet` writes a fleet file of local cells (each with its own nginx port and state
directory, the ``http`` probe gating every upgrade), :func:`start_cells` brings each cell up at its
version, :func:`stop_cells` stops every process. :func:`run_fleet_demo` uses them for ``zdu fleet
demo``: three cells in two rings, where the ring-0 cell gets a bad release (the demo app answers 5xx
in that version only); its probe fails the gate, its upgrade rolls back, the ring is over its failure
budget of 0 and the fleet halts: ring 1 is never touched. The CI engine's tests run the same cells
through a generated GitLab CI pipeline.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import tomli_w
from rich.console import Console
from rich.table import Table

from zdu.plugins import (
    Fleet,
    FleetReport,
    FleetRunner,
    Journal,
    PlatformEnv,
    ZduPluginManager,
    current_version,
    free_port,
    load_fleet,
)
from zdu_demo import demo_app_command
from zdu_demo.scenarios import create_mixed_database
from zdu_local.platform import LocalPlatform

__all__ = [
    "FleetDemoRow",
    "LocalCell",
    "render_fleet_table",
    "run_fleet_demo",
    "start_cells",
    "stop_cells",
    "write_local_fleet",
]

FROM_VERSION, RELEASE = "16.5.0", "16.6.0"


@attrs.frozen
class LocalCell:
    """A local cell of a demo or test fleet; ``bad``: the release answers 5xx in this cell."""

    name: str
    ring: str
    bad: bool = False


def write_local_fleet(
    directory: Path,
    cells: Sequence[LocalCell],
    rings: Sequence[dict[str, Any]],
    *,
    replicas: int = 1,
    rps: float = 30.0,
    clients: int = 3,
    startup_delay: float = 0.3,
) -> Path:
    """Write ``directory/fleet.toml``: ``cells`` on the local platform, state in ``directory/state``."""
    state = str((directory / "state").resolve())
    document: dict[str, Any] = {
        "fleet": {"name": "local-demo", "release": RELEASE, "state_dir": state},
        "defaults": {
            "target": {"platform": "local"},
            "platform": {
                "replicas": replicas,
                "command": demo_app_command(startup_delay),
                "ready_timeout": 15.0,
                "drain_timeout": 5.0,
                "stop_grace": 3.0,
            },
            # sticky sessions: no page asks for assets of the other version while both serve
            "strategy": {
                "name": "rolling",
                "max_surge": 1,
                "max_unavailable": 0,
                "layers": ["sticky-nginx"],
            },
            "probes": [{"name": "http", "rps": rps, "clients": clients, "max_failed_requests": 0}],
            "upgrade": {"state_dir": state},
        },
        "rings": [{"verify_seconds": 2.0, **ring} for ring in rings],
        "cells": [],
    }
    directory.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        # each cell its own database, which both versions read (writes are read back through any
        # instance of the cell)
        database = (directory / f"{cell.name}.sqlite").resolve()
        if not database.exists():
            create_mixed_database(database)
        command = demo_app_command(
            startup_delay,
            "--database",
            str(database),
            *(["--fault", "5xx", "--fault-version", RELEASE] if cell.bad else []),
        )
        document["cells"].append(
            {
                "name": cell.name,
                "ring": cell.ring,
                "version": FROM_VERSION,
                "platform": {"listen": f"127.0.0.1:{free_port('127.0.0.1')}", "command": command},
            }
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fleet.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def _platform(fleet: Fleet, name: str, manager: ZduPluginManager) -> LocalPlatform:
    cell = fleet.cell(name)
    config = fleet.config_of(cell, fleet.release, manager)
    return LocalPlatform(config.platform.options, PlatformEnv(config.target, config.target_state_dir))


def start_cells(fleet: Fleet, manager: ZduPluginManager) -> dict[str, LocalPlatform]:
    """Bring every cell up at its version (nginx and its instances); return their platforms."""
    platforms: dict[str, LocalPlatform] = {}
    try:
        for cell in fleet.cells:
            platform = _platform(fleet, cell.name, manager)
            platforms[cell.name] = platform
            platform.up(cell.version)
    except BaseException:
        stop_cells(platforms)
        raise
    return platforms


def stop_cells(platforms: dict[str, LocalPlatform]) -> None:
    """Stop every process of every cell."""
    for platform in platforms.values():
        platform.down()


@attrs.frozen
class FleetDemoRow:
    """One cell of the fleet demo: what its upgrade did and what it serves after."""

    cell: str
    ring: str
    from_version: str
    to_version: str
    status: str
    serving: str
    requests: int
    failed: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return attrs.asdict(self)


def _rows(fleet: Fleet, report: FleetReport, platforms: dict[str, LocalPlatform]) -> list[FleetDemoRow]:
    journal = Journal(fleet.state_dir / "journal.sqlite")
    rows = []
    for cell in report.cells:
        serving = current_version(platforms[cell["cell"]])
        status, requests, failed, note = "untouched", 0, 0, ""
        if cell["upgrades"]:
            record = journal.get(cell["upgrades"][-1])
            assert record is not None
            status = record.status.value
            for verdict in (record.report or {}).get("verdicts", []):
                requests += int(verdict["values"].get("requests", 0))
                failed += int(verdict["values"].get("failed_requests", 0))
            note = record.error or ""
        else:
            halted = [ring["name"] for ring in report.rings if ring["state"] == "failed"]
            note = f"never started: {halted[0]} halted the fleet" if halted else "never started"
        rows.append(
            FleetDemoRow(
                cell=cell["cell"],
                ring=cell["ring"],
                from_version=FROM_VERSION,
                to_version=RELEASE,
                status=status,
                serving=str(serving) if serving is not None else "none",
                requests=requests,
                failed=failed,
                note=note,
            )
        )
    return rows


def run_fleet_demo(
    *,
    manager: ZduPluginManager,
    replicas: int = 1,
    rps: float = 30.0,
    clients: int = 3,
    console: Console | None = None,
) -> list[FleetDemoRow]:
    """Three local cells in two rings, a bad release in ring 0: it rolls back and ring 1 stays untouched.

    Every process it starts is stopped at the end; returns one row per cell.
    """
    console = console or Console(stderr=True, highlight=False)
    directory = Path(tempfile.mkdtemp(prefix="zdu-fleet-demo-"))
    cells = [
        LocalCell("cell-a", "ring-0", bad=True),
        LocalCell("cell-b", "ring-1"),
        LocalCell("cell-c", "ring-1"),
    ]
    rings = [{"name": "ring-0", "bake_seconds": 2.0}, {"name": "ring-1", "concurrency": 2}]
    fleet_file = write_local_fleet(directory, cells, rings, replicas=replicas, rps=rps, clients=clients)
    fleet = load_fleet(fleet_file, manager)
    platforms: dict[str, LocalPlatform] = {}
    try:
        console.print(
            f"starting 3 cells of {replicas} demo-app instance(s) at {FROM_VERSION}, each behind its nginx …"
        )
        platforms = start_cells(fleet, manager)

        def listener(kind: str, message: str, data: dict[str, Any]) -> None:
            console.print(f"  {message}", highlight=False, markup=False)

        runner = FleetRunner(fleet, manager, listener=listener)
        try:
            report = runner.upgrade()
        finally:
            runner.close()
        return _rows(fleet, report, platforms)
    finally:
        console.print("stopping the cells …")
        stop_cells(platforms)
        shutil.rmtree(directory, ignore_errors=True)


def render_fleet_table(rows: Sequence[FleetDemoRow]) -> str:
    """The fleet demo's table, as text."""
    table = Table(title="zdu fleet demo: a bad release in ring 0 halts the fleet")
    for header in ("cell", "ring", "versions", "upgrade", "serves now", "requests", "failed", "why"):
        table.add_column(header, justify="right" if header in ("requests", "failed") else "left")
    for row in rows:
        table.add_row(
            row.cell,
            row.ring,
            f"{row.from_version} -> {row.to_version}",
            row.status,
            row.serving,
            str(row.requests),
            str(row.failed),
            row.note,
        )
    console = Console(width=200, file=io.StringIO())
    console.print(table)
    return str(console.file.getvalue())  # type: ignore[attr-defined]
