"""Running a fleet: ring by ring, at most a ring's concurrency of cells at once, halting on failure.

Every cell is an ordinary :class:`zdu.upgrade.Upgrade` (its own lock, its own journal entry, its own
probes), run on a bounded thread pool; the fleet adds the order and the gates around them:

* a ring starts only once the ring before it finished and *baked* (its probes and the cells' health
  watched for ``bake_seconds``), and, with ``approval``, once a person approved it;
* a cell starts only inside its maintenance window and outside the fleet's change freezes;
* a ring whose failed cells (rolled back by their own upgrade) pass its ``failure_budget`` halts the
  fleet: no new cell starts (``on_failure = "stop"``) or the ring's cells finish first (``"finish"``),
  and no later ring starts.

Resuming is safe after anything, a ``kill -9`` included. The fleet journal records a cell's intent
before its upgrade begins; on resume, a cell left with an intent and no outcome is reconciled with
what its own upgrade journal and its platform say: an upgrade in progress is resumed (it is the same
upgrade, continued from its phase), a platform that already serves the step's version counts as done,
and anything else starts afresh. So no cell is upgraded twice and none is skipped.

One plugin manager serves every cell, built once; each cell's journal file is opened once per run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs

from zdu.config import load_config
from zdu.errors import UsageError, ZduError
from zdu.fleet import Cell, Fleet, Ring
from zdu.fleet_journal import CellRecord, FleetJournal, RunStatus
from zdu.journal import Journal
from zdu.model import UpgradeStatus, VerdictStatus, Version
from zdu.platform import Platform, PlatformEnv
from zdu.probe import GateSettings, Probe, ProbeContext
from zdu.registry import ZduPluginManager
from zdu.upgrade import Upgrade, current_version

__all__ = ["CellOutcome", "FleetReport", "FleetRunner", "fleet_report", "utc_now"]

log = logging.getLogger("zdu.fleet")

#: ``(kind, message, data)``: what a run tells an observer (the command line's progress).
FleetListener = Callable[[str, str, dict[str, Any]], None]


def utc_now() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class CellOutcome:
    """How one cell ended in a run: ``succeeded`` (every step) or ``failed`` (a step rolled back)."""

    cell: str
    ring: str
    state: str
    version: str
    error: str | None = None
    upgrade_ids: tuple[str, ...] = ()


@attrs.frozen
class FleetReport:
    """A fleet run's result: its status, why it stopped, and every ring and cell."""

    run_id: str
    fleet: str
    release: str
    status: str
    reason: str | None
    started_at: float
    finished_at: float
    rings: tuple[dict[str, Any], ...]
    cells: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        """Whether every cell runs the release."""
        return self.status == RunStatus.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``zdu fleet ... --json`` prints."""
        return {
            "run_id": self.run_id,
            "fleet": self.fleet,
            "release": self.release,
            "status": self.status,
            "halted": self.status == RunStatus.HALTED,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "rings": list(self.rings),
            "cells": list(self.cells),
        }

    def summary(self) -> str:
        """A few lines for a person."""
        lines = [f"fleet {self.fleet} -> {self.release}: {self.status} (run {self.run_id})"]
        if self.reason:
            lines.append(f"  reason: {self.reason}")
        for ring in self.rings:
            lines.append(
                f"  {ring['name']:<12} {ring['state']:<10} {ring['succeeded']}/{ring['cells']} succeeded, "
                f"{ring['failed']} failed, {ring['untouched']} untouched"
            )
        return "\n".join(lines)


def fleet_report(fleet: Fleet, journal: FleetJournal, run_id: str) -> FleetReport:
    """The report of run ``run_id`` as the fleet journal holds it."""
    record = journal.get(run_id)
    if record is None:
        raise UsageError(f"no run {run_id!r} of fleet {fleet.name!r} in {journal.path}")
    steps: dict[str, list[CellRecord]] = {}
    for step in journal.cells(run_id):
        steps.setdefault(step.cell, []).append(step)
    ring_states = journal.rings(run_id)
    cells, rings = [], []
    for ring in fleet.rings:
        counts = {"succeeded": 0, "failed": 0, "running": 0, "untouched": 0}
        for cell in fleet.cells_of(ring.name):
            state, version, error, ids = _cell_state(fleet, cell, steps.get(cell.name, []))
            counts["untouched" if state == "pending" else state if state in counts else "running"] += 1
            cells.append(
                {
                    "cell": cell.name,
                    "ring": ring.name,
                    "state": state,
                    "version": version,
                    "error": error,
                    "upgrades": ids,
                }
            )
        rings.append(
            {
                "name": ring.name,
                "state": ring_states.get(ring.name, "pending"),
                "cells": len(fleet.cells_of(ring.name)),
                **counts,
            }
        )
    return FleetReport(
        run_id=run_id,
        fleet=fleet.name,
        release=str(fleet.release),
        status=record.status,
        reason=record.reason,
        started_at=record.started_at,
        finished_at=record.finished_at or time.time(),
        rings=tuple(rings),
        cells=tuple(cells),
    )


def _cell_state(fleet: Fleet, cell: Cell, steps: list[CellRecord]) -> tuple[str, str, str | None, list[str]]:
    ids = [s.upgrade_id for s in steps if s.upgrade_id]
    path = [str(v) for v in fleet.path_of(cell)]
    done = {s.to_version for s in steps if s.state == "succeeded"}
    if not path or all(v in done for v in path):
        return "succeeded", str(fleet.release), None, ids
    version = max([str(cell.version), *done], key=Version.parse)
    last = steps[-1] if steps else None
    if last is None:
        return "pending", version, None, ids
    if last.state == "failed":
        return "failed", version, last.error, ids
    if last.state == "started":
        return "started", version, None, ids
    return "running", version, None, ids


class ReusingJournal(Journal):
    """The upgrade journal with one connection per thread, kept open for the run.

    :class:`~zdu.journal.Journal` opens a connection per write, which is right for one upgrade; a
    fleet's thousand upgrades spent most of zdu's own time per cell opening, and on close
    checkpointing, the same file. Commits are ``synchronous=NORMAL`` (WAL): durable when the process
    is killed, which is what resuming needs, though not when the machine loses power (then each cell's
    platform, asked on resume, still says where it stands); a fully synchronous commit per event
    serialised a thousand cells behind the disk. The records and transactions are the journal's own.
    """

    def __init__(self, path: Path | str) -> None:
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        super().__init__(path)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.row_factory = sqlite3.Row
            self._local.db = db
            with self._all_lock:
                self._all.append(db)
        yield db

    def close(self) -> None:
        """Close every thread's connection."""
        with self._all_lock:
            for db in self._all:
                db.close()
            self._all.clear()


class FleetRunner:
    """Runs (or resumes) a fleet's upgrade.

    :param fleet: the fleet, as :func:`zdu.fleet.load_fleet` reads it.
    :param manager: the plugin manager every cell's upgrade uses (built once).
    :param now: the clock windows and freezes are judged by (UTC).
    :param wait_for_windows: when every remaining cell of a ring is outside its window, wait for the
        next one to open instead of stopping the run as ``waiting``.
    :param listener: told of every cell and ring as they start and end.
    """

    def __init__(
        self,
        fleet: Fleet,
        manager: ZduPluginManager,
        *,
        now: Callable[[], dt.datetime] = utc_now,
        wait_for_windows: bool = False,
        listener: FleetListener | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        self.fleet = fleet
        self.manager = manager
        self.journal = FleetJournal(fleet.journal_path)
        self.now = now
        self.wait_for_windows = wait_for_windows
        self.listener = listener
        self.poll_seconds = poll_seconds
        self.cancel = threading.Event()
        self._journals: dict[Path, ReusingJournal] = {}
        self._journals_lock = threading.Lock()

    def close(self) -> None:
        """Close the fleet journal and the cells' journals."""
        self.journal.close()
        for journal in self._journals.values():
            journal.close()

    def _tell(self, kind: str, message: str, **data: Any) -> None:
        log.info("%s", message)
        if self.listener is not None:
            try:
                self.listener(kind, message, data)
            except Exception:
                log.exception("fleet listener failed on %s", kind)

    # -- entry points --------------------------------------------------------------------------------

    def upgrade(self, approve: Iterable[str] = ()) -> FleetReport:
        """Start a new run of the whole fleet.

        :raises TargetBusy: the fleet has a run in progress (resume it, or wait for it).
        """
        approved = self._check_rings(approve)
        run_id = self.journal.begin(self.fleet.name, str(self.fleet.release))
        return self._run(run_id, approved)

    def resume(self, approve: Iterable[str] = ()) -> FleetReport:
        """Continue the fleet's halted, waiting or interrupted run (cells that failed are tried again)."""
        approved = self._check_rings(approve)
        record = self.journal.in_progress(self.fleet.name)
        if record is None:
            raise UsageError(f"fleet {self.fleet.name!r} has no halted, waiting or interrupted run to resume")
        self.journal.claim(record.id)
        return self._run(record.id, approved)

    def _check_rings(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        for name in names:
            self.fleet.ring(name)
        return names

    # -- the run -------------------------------------------------------------------------------------

    def _run(self, run_id: str, approve: Sequence[str]) -> FleetReport:
        for name in approve:
            if self.journal.rings(run_id).get(name) in (None, "pending"):
                self.journal.ring_state(run_id, name, "approved", "approved from the command line")
        status: str = RunStatus.HALTED
        reason: str | None = "interrupted"
        try:
            status, reason = self._rings(run_id)
        except Exception as error:
            reason = f"the run stopped on an error: {type(error).__name__}: {error}"
            raise
        finally:
            self.journal.finish(run_id, status, reason)
            self._tell(
                "fleet-finished", f"fleet {self.fleet.name}: {status}" + (f": {reason}" if reason else "")
            )
        return fleet_report(self.fleet, self.journal, run_id)

    def _rings(self, run_id: str) -> tuple[str, str | None]:
        for ring in self.fleet.rings:
            state = self.journal.rings(run_id).get(ring.name)
            if state == "baked":
                continue
            if ring.approval and state not in ("approved", "running", "baking", "failed"):
                return RunStatus.WAITING, (
                    f"ring {ring.name} waits for approval: "
                    f"'zdu fleet resume FLEET --approve {ring.name}' once it may start"
                )
            self.journal.ring_state(run_id, ring.name, "running")
            self._tell(
                "ring-started",
                f"ring {ring.name}: {len(self.fleet.cells_of(ring.name))} cells",
                ring=ring.name,
            )
            status, reason = self._ring(run_id, ring)
            if status is not None:
                if status == RunStatus.HALTED:
                    self.journal.ring_state(run_id, ring.name, "failed", reason)
                return status, reason
            self.journal.ring_state(run_id, ring.name, "baking")
            problem = self._bake(run_id, ring)
            if problem is not None:
                self.journal.ring_state(run_id, ring.name, "failed", problem)
                return RunStatus.HALTED, problem
            self.journal.ring_state(run_id, ring.name, "baked")
            self._tell("ring-baked", f"ring {ring.name} baked", ring=ring.name)
        return RunStatus.SUCCEEDED, None

    def _ring(self, run_id: str, ring: Ring) -> tuple[str | None, str | None]:
        """Upgrade the ring's cells; return a halting or waiting status and its reason, else ``None``s."""
        steps: dict[str, list[CellRecord]] = {}
        for step in self.journal.cells(run_id):
            steps.setdefault(step.cell, []).append(step)
        pending = deque(
            cell
            for cell in self.fleet.cells_of(ring.name)
            if _cell_state(self.fleet, cell, steps.get(cell.name, []))[0] != "succeeded"
        )
        failures, halt, stopping = 0, None, False
        running: dict[Future[CellOutcome], Cell] = {}
        with ThreadPoolExecutor(max_workers=ring.concurrency, thread_name_prefix=f"zdu-{ring.name}") as pool:
            while True:
                requested = self.journal.halt_requested(run_id)
                if requested and not stopping:
                    halt, stopping = halt or f"halted on request: {requested}", True
                if self.cancel.is_set() and not stopping:
                    halt, stopping = halt or "interrupted", True
                now = self.now()
                deferred: list[Cell] = []
                while not stopping and pending and len(running) < ring.concurrency:
                    cell = pending.popleft()
                    if not self.fleet.may_start(cell, now):
                        deferred.append(cell)
                        continue
                    done = {s.to_version for s in steps.get(cell.name, []) if s.state == "succeeded"}
                    # a step tried before in this run (interrupted, failed or paused): reconcile it
                    started = {s.to_version for s in steps.get(cell.name, []) if s.state != "succeeded"}
                    running[pool.submit(self._cell, run_id, ring, cell, done, started)] = cell
                pending.extendleft(reversed(deferred))
                if not running:
                    if stopping or not pending:
                        break
                    opens = min(self.fleet.next_start(cell, now) for cell in pending)
                    if not self.wait_for_windows:
                        return RunStatus.WAITING, (
                            f"ring {ring.name}: {len(pending)} cells wait for their maintenance window or "
                            f"the end of a freeze; the next may start at {opens.isoformat()} "
                            "('zdu fleet resume FLEET' then, or --wait)"
                        )
                    self.cancel.wait(min(max((opens - now).total_seconds(), 0.05), 60.0))
                    continue
                finished, _ = wait(running, timeout=self.poll_seconds, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell = running.pop(future)
                    outcome = future.result()
                    if outcome.state == "failed":
                        failures += 1
                        if failures > ring.failure_budget and halt is None:
                            halt = (
                                f"ring {ring.name}: {failures} failed cell(s), over its failure budget of "
                                f"{ring.failure_budget}; first over it: {cell.name}: {outcome.error}"
                            )
                            stopping = ring.on_failure == "stop"
        if halt is not None:
            return RunStatus.HALTED, halt
        return None, None

    def _journal(self, path: Path) -> ReusingJournal:
        with self._journals_lock:
            if path not in self._journals:
                self._journals[path] = ReusingJournal(path)
            return self._journals[path]

    def _cell(self, run_id: str, ring: Ring, cell: Cell, done: set[str], started: set[str]) -> CellOutcome:
        """Upgrade one cell along its path (in a worker thread); never raises."""
        version = cell.version
        ids: list[str] = []
        for step in self.fleet.path_of(cell):
            if str(step) in done:
                version = step
                continue
            try:
                config = self.fleet.config_of(cell, step, self.manager)
                upgrade = Upgrade(
                    config,
                    self.manager,
                    journal=self._journal(config.journal_path),
                    verify_seconds=ring.verify_seconds,
                )
                upgrade.cancel = self.cancel
                try:
                    report = self._step(run_id, ring, cell, upgrade, version, step, str(step) in started)
                finally:
                    upgrade.close()
            except Exception as error:  # a cell's error, a plugin's bug included, fails that cell only
                if not isinstance(error, ZduError | OSError):
                    log.exception("cell %s failed on an unexpected error", cell.name)
                self.journal.cell_started(run_id, cell.name, ring.name, str(version), str(step))
                self.journal.cell_finished(run_id, cell.name, str(step), "failed", None, str(error))
                self._tell("cell-failed", f"{cell.name}: {error}", cell=cell.name, ring=ring.name)
                return CellOutcome(cell.name, ring.name, "failed", str(version), str(error), tuple(ids))
            if report is None:  # the platform already served the step's version
                version = step
                continue
            ids.append(report.upgrade_id)
            if report.status is not UpgradeStatus.SUCCEEDED:
                problem = f"{report.status.value}: {report.error}"
                self.journal.cell_finished(run_id, cell.name, str(step), "failed", report.upgrade_id, problem)
                self._tell(
                    "cell-failed",
                    f"{cell.name}: {problem}",
                    cell=cell.name,
                    ring=ring.name,
                    upgrade=report.upgrade_id,
                )
                return CellOutcome(cell.name, ring.name, "failed", str(version), problem, tuple(ids))
            self.journal.cell_finished(run_id, cell.name, str(step), "succeeded", report.upgrade_id, None)
            version = step
        self._tell("cell-succeeded", f"{cell.name}: {version}", cell=cell.name, ring=ring.name)
        return CellOutcome(cell.name, ring.name, "succeeded", str(version), None, tuple(ids))

    def _step(
        self,
        run_id: str,
        ring: Ring,
        cell: Cell,
        upgrade: Upgrade,
        version: Version,
        step: Version,
        intended: bool,
    ) -> Any:
        """Run one step of a cell; ``None`` when reconciliation finds it done."""
        resume_id = None
        if intended:  # a run stopped after recording the intent: what became of it?
            records = upgrade.journal.upgrades(cell.name, limit=1)
            record = records[0] if records else None
            if record is not None and record.status.in_progress and record.to_version == str(step):
                resume_id = record.id
        if resume_id is None and str(current_version(upgrade.platform)) == str(step):
            self.journal.cell_started(run_id, cell.name, ring.name, str(version), str(step))
            self.journal.cell_finished(
                run_id, cell.name, str(step), "succeeded", None, f"already served {step}"
            )
            return None
        self.journal.cell_started(run_id, cell.name, ring.name, str(version), str(step))
        self._tell("cell-started", f"{cell.name}: {version} -> {step}", cell=cell.name, ring=ring.name)
        return upgrade.run(resume=resume_id)

    # -- bake ----------------------------------------------------------------------------------------

    def bake_ring(self, name: str) -> str | None:
        """Judge and bake one ring outside a run (a CI pipeline's bake job); the problem, if any.

        The ring's cells that do not serve the release count against its failure budget; then its
        probes and health checks watch for ``bake_seconds``.
        """
        ring = self.fleet.ring(name)
        behind: list[str] = []
        problem = self._bake("", ring, behind)
        if len(behind) > ring.failure_budget:
            return (
                f"ring {ring.name}: {len(behind)} cell(s) do not serve {self.fleet.release}, over its "
                f"failure budget of {ring.failure_budget}: {', '.join(behind)}"
            )
        return problem

    def _bake(self, run_id: str, ring: Ring, behind: list[str] | None = None) -> str | None:
        """Watch the ring's cells (health, and their probes) for ``bake_seconds``; the first problem."""
        watched: list[tuple[Cell, Platform, list[tuple[Probe, GateSettings]]]] = []
        behind = [] if behind is None else behind
        try:
            for cell in self.fleet.cells_of(ring.name):
                raw = self.fleet.raw_config(cell, self.fleet.release, self.fleet.release)
                config = load_config(raw, self.manager)
                platform: Platform = config.platform.build(
                    PlatformEnv(
                        target=config.target, state_dir=config.target_state_dir, release=self.fleet.release
                    )
                )
                probes: list[tuple[Probe, GateSettings]] = []
                watched.append((cell, platform, probes))
                if current_version(platform) != self.fleet.release:
                    behind.append(cell.name)
                    continue  # a cell that failed within the budget: its own upgrade judged it
                if ring.bake_seconds > 0:
                    context = ProbeContext(
                        url=platform.url,
                        target=config.target,
                        release=config.release,
                        from_version=cell.version,
                    )
                    for spec in config.probes:
                        probe: Probe = spec.build()
                        probe.start(context)
                        probes.append((probe, spec.gate))
            if ring.bake_seconds > 0:
                self._tell(
                    "ring-baking", f"ring {ring.name}: baking for {ring.bake_seconds:g}s", ring=ring.name
                )
            deadline = time.monotonic() + ring.bake_seconds
            while True:
                for cell, platform, _ in watched:
                    problems = platform.check_health()
                    if problems:
                        return (
                            f"bake of ring {ring.name}: cell {cell.name} is unhealthy: {'; '.join(problems)}"
                        )
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.cancel.wait(min(left, 1.0)):
                    return f"bake of ring {ring.name} interrupted"
            return self._verdicts(ring, watched)
        finally:
            for _, platform, probes in watched:
                for probe, _settings in probes:  # those an early problem left running
                    with contextlib.suppress(Exception):
                        probe.stop()
                platform.close()

    def _verdicts(
        self, ring: Ring, watched: list[tuple[Cell, Platform, list[tuple[Probe, GateSettings]]]]
    ) -> str | None:
        problem = None
        for cell, _, probes in watched:
            while probes:
                probe, settings = probes.pop()
                verdict = probe.stop()
                if verdict.status is VerdictStatus.FAILED and not settings.dry_run and problem is None:
                    problem = (
                        f"bake of ring {ring.name}: probe {verdict.probe} of cell {cell.name} failed: "
                        f"{'; '.join(verdict.reasons)}"
                    )
        return problem
