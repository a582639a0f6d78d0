"""``zdu fleet plan | upgrade | resume | status | halt | pipeline | config | bake FLEET``.

Exit codes follow ``zdu``'s: 0 every cell runs the release (or the command did what it said), 1 the
fleet halted (a ring over its failure budget, a failed bake, a halt asked for), 2 bad input, 3 the
fleet has a run in progress, 4 the run waits (for an approval, a maintenance window, a freeze's end).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
import tomli_w

from zdu.console import EXIT_FAILED, EXIT_PAUSED, emit, interruptible, manager_from, stderr_console
from zdu.errors import UsageError
from zdu.fleet import Fleet, is_required_stop, load_fleet
from zdu.fleet_journal import FleetJournal, RunStatus
from zdu.fleet_pipeline import pipeline as build_pipeline
from zdu.fleet_pipeline import render_pipeline
from zdu.fleet_run import FleetReport, FleetRunner, fleet_report, utc_now
from zdu.model import Version

__all__ = ["fleet"]

fleet_argument = click.argument(
    "fleet_file", metavar="FLEET", type=click.Path(dir_okay=False, path_type=Path)
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
approve_option = click.option(
    "--approve", "approve", multiple=True, metavar="RING", help="Approve RING to start (repeatable)."
)
wait_option = click.option(
    "--wait", is_flag=True, help="Wait for closed maintenance windows and freezes instead of stopping."
)


def _now_option(function: Any) -> Any:
    return click.option(
        "--now",
        "now",
        metavar="ISO-8601",
        help="Judge windows and freezes as if it were this moment (UTC unless an offset is given).",
    )(function)


def _parse_now(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now: {text!r} is not an ISO 8601 date-time (2026-12-05T23:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _load(ctx: click.Context, path: Path, *, check_cells: bool = True) -> Fleet:
    return load_fleet(path, manager_from(ctx), check_cells=check_cells)


@click.group()
def fleet() -> None:
    """Upgrade a fleet of cells ring by ring: bake, budgets, windows, freezes, halts."""


@fleet.command()
@fleet_argument
@json_option
@_now_option
@click.pass_context
def plan(ctx: click.Context, fleet_file: Path, as_json: bool, now: str | None) -> None:
    """Show the ring order and every cell's path and window, and when each may start."""
    fleet_ = _load(ctx, fleet_file)
    moment = _parse_now(now) or utc_now()
    rings = []
    for ring in fleet_.rings:
        cells = []
        for cell in fleet_.cells_of(ring.name):
            path = fleet_.path_of(cell)
            cells.append(
                {
                    "cell": cell.name,
                    "from_version": str(cell.version),
                    "path": [str(v) for v in path],
                    "required_stops": [str(v) for v in path[:-1] if is_required_stop(v)],
                    "window": cell.window.text if cell.window else None,
                    "next_start": fleet_.next_start(cell, moment).isoformat() if path else None,
                }
            )
        rings.append({**_ring_dict(ring), "cells": cells})
    data = {
        "fleet": fleet_.name,
        "release": str(fleet_.release),
        "now": moment.isoformat(),
        "freezes": [
            {"start": f.start.isoformat(), "end": f.end.isoformat(), "reason": f.reason}
            for f in fleet_.freezes
        ],
        "rings": rings,
    }

    def text() -> str:
        lines = [
            f"fleet {fleet_.name} -> {fleet_.release} ({len(fleet_.cells)} cells, "
            f"judged at {moment:%Y-%m-%d %H:%M} UTC)"
        ]
        lines += [
            f"  freeze {f.start:%Y-%m-%d %H:%M} .. {f.end:%Y-%m-%d %H:%M} {f.reason}" for f in fleet_.freezes
        ]
        for ring in rings:
            lines.append(
                f"{ring['name']}: {len(ring['cells'])} cells, {ring['concurrency']} at a time, bake "
                f"{ring['bake_seconds']:g}s, failure budget {ring['failure_budget']} ({ring['on_failure']})"
                + (", needs approval" if ring["approval"] else "")
            )
            for cell in ring["cells"]:
                path = (
                    " -> ".join([cell["from_version"], *cell["path"]]) if cell["path"] else "at the release"
                )
                stops = (
                    f" (required stops: {', '.join(cell['required_stops'])})"
                    if cell["required_stops"]
                    else ""
                )
                window = cell["window"] or "any time"
                start = "now" if cell["next_start"] == moment.isoformat() else cell["next_start"] or "-"
                lines.append(f"  {cell['cell']:<24} {path}{stops}  window {window}, starts {start}")
        return "\n".join(lines)

    emit(data, as_json, text)


def _ring_dict(ring: Any) -> dict[str, Any]:
    return {
        "name": ring.name,
        "concurrency": ring.concurrency,
        "bake_seconds": ring.bake_seconds,
        "failure_budget": ring.failure_budget,
        "on_failure": ring.on_failure,
        "approval": ring.approval,
    }


def _runner(ctx: click.Context, fleet_: Fleet, now: str | None, wait: bool) -> FleetRunner:
    console = stderr_console()
    moment = _parse_now(now)
    started = utc_now()

    def clock() -> dt.datetime:
        return utc_now() if moment is None else moment + (utc_now() - started)

    def listener(kind: str, message: str, data: dict[str, Any]) -> None:
        style = {
            "cell-failed": "red",
            "ring-started": "bold",
            "ring-baked": "green",
            "fleet-finished": "bold",
        }
        if kind == "cell-started":
            return
        colour = style.get(kind, "dim")
        console.print(f"[{colour}]{message}[/{colour}]", highlight=False, markup=True, soft_wrap=True)

    return FleetRunner(fleet_, manager_from(ctx), now=clock, wait_for_windows=wait, listener=listener)


def _finish(report: FleetReport, as_json: bool) -> None:
    emit(report.to_dict(), as_json, report.summary)
    if report.status == RunStatus.SUCCEEDED:
        sys.exit(0)
    sys.exit(EXIT_PAUSED if report.status == RunStatus.WAITING else EXIT_FAILED)


def _run(
    ctx: click.Context,
    fleet_file: Path,
    as_json: bool,
    approve: tuple[str, ...],
    wait: bool,
    now: str | None,
    resume: bool,
) -> None:
    fleet_ = _load(ctx, fleet_file)
    runner = _runner(ctx, fleet_, now, wait)
    try:
        with interruptible(runner.cancel, stderr_console()):
            report = runner.resume(approve) if resume else runner.upgrade(approve)
    finally:
        runner.close()
    _finish(report, as_json)


@fleet.command()
@fleet_argument
@json_option
@approve_option
@wait_option
@_now_option
@click.pass_context
def upgrade(
    ctx: click.Context, fleet_file: Path, as_json: bool, approve: tuple[str, ...], wait: bool, now: str | None
) -> None:
    """Upgrade every cell to the release, ring by ring; halt on the first ring over its budget."""
    _run(ctx, fleet_file, as_json, approve, wait, now, resume=False)


@fleet.command()
@fleet_argument
@json_option
@approve_option
@wait_option
@_now_option
@click.pass_context
def resume(
    ctx: click.Context, fleet_file: Path, as_json: bool, approve: tuple[str, ...], wait: bool, now: str | None
) -> None:
    """Continue a halted, waiting or interrupted run; cells that failed are tried again."""
    _run(ctx, fleet_file, as_json, approve, wait, now, resume=True)


@fleet.command()
@fleet_argument
@json_option
@click.pass_context
def status(ctx: click.Context, fleet_file: Path, as_json: bool) -> None:
    """Show the fleet's latest run: its status, every ring, every cell."""
    fleet_ = _load(ctx, fleet_file, check_cells=False)
    journal = FleetJournal(fleet_.journal_path)
    try:
        journal.in_progress(fleet_.name)  # marks a run whose process died as interrupted
        record = journal.latest(fleet_.name)
        if record is None:
            emit({"fleet": fleet_.name, "run": None}, as_json, f"fleet {fleet_.name}: no run recorded")
            return
        report = fleet_report(fleet_, journal, record.id)
    finally:
        journal.close()
    emit(report.to_dict(), as_json, report.summary)


@fleet.command()
@fleet_argument
@json_option
@click.option(
    "--reason", default="asked from the command line", show_default=True, help="Why, for the journal."
)
@click.pass_context
def halt(ctx: click.Context, fleet_file: Path, as_json: bool, reason: str) -> None:
    """Halt the fleet's run: no new cell starts (those upgrading finish); 'resume' continues it."""
    fleet_ = _load(ctx, fleet_file, check_cells=False)
    journal = FleetJournal(fleet_.journal_path)
    try:
        record = journal.request_halt(fleet_.name, reason)
    finally:
        journal.close()
    if record is None:
        raise UsageError(f"fleet {fleet_.name!r} has no run in progress to halt")
    emit(record.to_dict(), as_json, f"fleet {fleet_.name}: run {record.id} asked to halt ({record.status})")


@fleet.command()
@fleet_argument
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout)."
)
@click.option("--zdu", "zdu_command", default="zdu", show_default=True, help="How the jobs call zdu.")
@click.option(
    "--fleet-path",
    help="The fleet file's path as jobs see it, from the repository's root (default: as given).",
)
@json_option
@click.pass_context
def pipeline(
    ctx: click.Context,
    fleet_file: Path,
    output: Path | None,
    zdu_command: str,
    fleet_path: str | None,
    as_json: bool,
) -> None:
    """Write a GitLab CI pipeline running the fleet: a stage per ring, a job per cell, bake jobs.

    With --json, the pipeline as bare JSON (no header comment).
    """
    fleet_ = _load(ctx, fleet_file)
    where = fleet_path or str(fleet_file)
    if as_json:
        text = json.dumps(build_pipeline(fleet_, where, zdu=zdu_command), indent=2) + "\n"
    else:
        text = render_pipeline(fleet_, where, zdu=zdu_command)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@fleet.command()
@fleet_argument
@click.argument("cell")
@click.option("--to", "to_version", help="The step's version (default: the first step of the cell's path).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout)."
)
@json_option
@click.pass_context
def config(
    ctx: click.Context,
    fleet_file: Path,
    cell: str,
    to_version: str | None,
    output: Path | None,
    as_json: bool,
) -> None:
    """Write one cell's upgrade configuration (TOML, or JSON with --json) for one step, for 'zdu upgrade'."""
    fleet_ = _load(ctx, fleet_file, check_cells=False)
    cell_ = fleet_.cell(cell)
    path = fleet_.path_of(cell_)
    if not path:
        raise UsageError(f"cell {cell!r} already runs the release {fleet_.release}: it has no step")
    step = Version.parse(to_version) if to_version else path[0]
    fleet_.config_of(cell_, step, manager_from(ctx))  # checks the step and the configuration
    previous = ([cell_.version, *path])[[cell_.version, *path].index(step) - 1]
    raw = fleet_.raw_config(cell_, previous, step)
    text = json.dumps(raw, indent=2) + "\n" if as_json else tomli_w.dumps(raw)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@fleet.command()
@fleet_argument
@click.argument("ring")
@json_option
@click.pass_context
def bake(ctx: click.Context, fleet_file: Path, ring: str, as_json: bool) -> None:
    """Judge RING against its failure budget, then watch its probes and health for its bake time."""
    fleet_ = _load(ctx, fleet_file, check_cells=False)
    runner = FleetRunner(fleet_, manager_from(ctx))
    try:
        with interruptible(runner.cancel, stderr_console()):
            problem = runner.bake_ring(ring)
    finally:
        runner.close()
    data = {"fleet": fleet_.name, "ring": ring, "ok": problem is None, "problem": problem}
    emit(data, as_json, problem or f"ring {ring} baked")
    sys.exit(0 if problem is None else EXIT_FAILED)
