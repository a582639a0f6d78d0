"""The fleet journal: a durable record of fleet runs, ring by ring and cell by cell (SQLite).

A fleet run records a cell's *intent* (``started``, with the step's versions) before the cell's upgrade
begins and its outcome after, so a run killed at any moment can be resumed without upgrading a cell
twice or skipping one: a cell left ``started`` is reconciled by asking its own upgrade journal and its
platform what happened (:mod:`zdu.fleet_run`). One run per fleet is in progress at a time, enforced
like the upgrade journal's per-target lock: a partial unique index, written in one ``BEGIN IMMEDIATE``.

The fleet journal is one connection, shared by the threads of a run under a lock: a run writes a few
rows per cell, and opening a connection per write was most of zdu's own cost per cell.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil

from zdu.errors import TargetBusy
from zdu.journal import process_alive

__all__ = ["CellRecord", "FleetJournal", "RunRecord", "RunStatus"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_runs (
    id TEXT PRIMARY KEY,
    fleet TEXT NOT NULL,
    release TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    owner_host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_started REAL NOT NULL,
    halt_requested TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_fleet_run_in_progress
    ON fleet_runs (fleet) WHERE status IN ('running', 'halted', 'waiting', 'interrupted');
CREATE TABLE IF NOT EXISTS fleet_cells (
    run_id TEXT NOT NULL REFERENCES fleet_runs (id),
    cell TEXT NOT NULL,
    ring TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version TEXT NOT NULL,
    state TEXT NOT NULL,
    upgrade_id TEXT,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (run_id, cell, to_version)
);
CREATE TABLE IF NOT EXISTS fleet_rings (
    run_id TEXT NOT NULL REFERENCES fleet_runs (id),
    ring TEXT NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, ring)
);
"""


class RunStatus:
    """The states of a fleet run; the first four are in progress (the fleet is held)."""

    RUNNING = "running"
    HALTED = "halted"
    WAITING = "waiting"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    IN_PROGRESS = (RUNNING, HALTED, WAITING, INTERRUPTED)


@attrs.frozen
class RunRecord:
    """One fleet run."""

    id: str
    fleet: str
    release: str
    status: str
    reason: str | None
    started_at: float
    finished_at: float | None
    owner_pid: int
    halt_requested: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return attrs.asdict(self)


@attrs.frozen
class CellRecord:
    """One step of one cell in a run: ``started`` (intent), ``succeeded`` or ``failed``."""

    cell: str
    ring: str
    from_version: str
    to_version: str
    state: str
    upgrade_id: str | None
    error: str | None
    started_at: float
    finished_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return attrs.asdict(self)


class FleetJournal:
    """The fleet journal in one SQLite file, one connection shared under a lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- runs --------------------------------------------------------------------------------------

    def _in_progress_row(self, db: sqlite3.Connection, fleet: str) -> sqlite3.Row | None:
        """The row of the fleet's run in progress, once a run whose owner died is marked interrupted."""
        self._mark_dead_owner(db, fleet)
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM fleet_runs WHERE fleet = ? AND status IN (?, ?, ?, ?)",
            (fleet, *RunStatus.IN_PROGRESS),
        ).fetchone()
        return row

    def begin(self, fleet: str, release: str) -> str:
        """Record a new running fleet run; :class:`TargetBusy` when one is in progress."""
        run_id = time.strftime("fleet-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        me = psutil.Process()
        with self._transaction() as db:
            row = self._in_progress_row(db, fleet)
            if row is None:
                db.execute(
                    "INSERT INTO fleet_runs (id, fleet, release, status, started_at, owner_host, owner_pid, "
                    "owner_started) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                    (run_id, fleet, release, time.time(), socket.gethostname(), me.pid, me.create_time()),
                )
        if row is not None:
            raise _busy(fleet, row)
        return run_id

    def in_progress(self, fleet: str) -> RunRecord | None:
        """The fleet's run in progress (a dead owner's marked ``interrupted``), or ``None``."""
        with self._transaction() as db:
            row = self._in_progress_row(db, fleet)
        return _run(row) if row is not None else None

    def latest(self, fleet: str) -> RunRecord | None:
        """The fleet's newest run."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM fleet_runs WHERE fleet = ? ORDER BY started_at DESC LIMIT 1", (fleet,)
            ).fetchone()
        return _run(row) if row is not None else None

    def get(self, run_id: str) -> RunRecord | None:
        """One run, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT * FROM fleet_runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row is not None else None

    def claim(self, run_id: str) -> None:
        """Make this process the owner of a halted, waiting or interrupted run; mark it running.

        :raises TargetBusy: the run is running in a live process.
        """
        me = psutil.Process()
        with self._transaction() as db:
            row = db.execute("SELECT * FROM fleet_runs WHERE id = ?", (run_id,)).fetchone()
            if row["status"] == RunStatus.RUNNING and _alive(
                row["owner_host"], row["owner_pid"], row["owner_started"]
            ):
                raise _busy(row["fleet"], row)
            db.execute(
                "UPDATE fleet_runs SET status = 'running', reason = NULL, halt_requested = NULL, "
                "owner_host = ?, owner_pid = ?, owner_started = ? WHERE id = ?",
                (socket.gethostname(), me.pid, me.create_time(), run_id),
            )

    def finish(self, run_id: str, status: str, reason: str | None = None) -> None:
        """Record how a run ended, or that it halted or waits."""
        with self._transaction() as db:
            db.execute(
                "UPDATE fleet_runs SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                (status, reason, None if status in RunStatus.IN_PROGRESS else time.time(), run_id),
            )

    def request_halt(self, fleet: str, reason: str) -> RunRecord | None:
        """Ask the fleet's run in progress to halt: no new cell starts; one not running halts at once."""
        with self._transaction() as db:
            row = self._in_progress_row(db, fleet)
            if row is None:
                return None
            db.execute("UPDATE fleet_runs SET halt_requested = ? WHERE id = ?", (reason, row["id"]))
            if row["status"] != RunStatus.RUNNING:
                db.execute(
                    "UPDATE fleet_runs SET status = 'halted', reason = ? WHERE id = ?", (reason, row["id"])
                )
            row = db.execute("SELECT * FROM fleet_runs WHERE id = ?", (row["id"],)).fetchone()
        return _run(row)

    def halt_requested(self, run_id: str) -> str | None:
        """The reason of a halt asked for the run, if one was."""
        with self._lock:
            row = self._db.execute("SELECT halt_requested FROM fleet_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row["halt_requested"]

    def _mark_dead_owner(self, db: sqlite3.Connection, fleet: str) -> None:
        for row in db.execute(
            "SELECT * FROM fleet_runs WHERE fleet = ? AND status = 'running'", (fleet,)
        ).fetchall():
            if not _alive(row["owner_host"], row["owner_pid"], row["owner_started"]):
                db.execute(
                    "UPDATE fleet_runs SET status = 'interrupted', reason = ? WHERE id = ?",
                    (f"its process (pid {row['owner_pid']}) ended while it ran", row["id"]),
                )

    # -- cells and rings ---------------------------------------------------------------------------

    def cell_started(self, run_id: str, cell: str, ring: str, from_version: str, to_version: str) -> None:
        """Record the intent to upgrade ``cell`` to ``to_version``, before anything changes."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO fleet_cells (run_id, cell, ring, from_version, to_version, state, started_at) "
                "VALUES (?, ?, ?, ?, ?, 'started', ?) ON CONFLICT (run_id, cell, to_version) DO UPDATE SET "
                "state = 'started', error = NULL, started_at = excluded.started_at, finished_at = NULL",
                (run_id, cell, ring, from_version, to_version, time.time()),
            )

    def cell_finished(
        self, run_id: str, cell: str, to_version: str, state: str, upgrade_id: str | None, error: str | None
    ) -> None:
        """Record how a cell's step ended: ``succeeded`` or ``failed``."""
        with self._transaction() as db:
            db.execute(
                "UPDATE fleet_cells SET state = ?, upgrade_id = ?, error = ?, finished_at = ? "
                "WHERE run_id = ? AND cell = ? AND to_version = ?",
                (state, upgrade_id, error, time.time(), run_id, cell, to_version),
            )

    def cells(self, run_id: str) -> list[CellRecord]:
        """Every cell step of a run, in the order they started."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM fleet_cells WHERE run_id = ? ORDER BY started_at, cell", (run_id,)
            ).fetchall()
        return [
            CellRecord(
                cell=r["cell"],
                ring=r["ring"],
                from_version=r["from_version"],
                to_version=r["to_version"],
                state=r["state"],
                upgrade_id=r["upgrade_id"],
                error=r["error"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
            )
            for r in rows
        ]

    def ring_state(self, run_id: str, ring: str, state: str, detail: str | None = None) -> None:
        """Record a ring's state: ``approved``, ``running``, ``baking``, ``baked`` or ``failed``."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO fleet_rings (run_id, ring, state, at, detail) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, ring) DO UPDATE SET state = excluded.state, at = excluded.at, "
                "detail = excluded.detail",
                (run_id, ring, state, time.time(), detail),
            )

    def rings(self, run_id: str) -> dict[str, str]:
        """Every recorded ring's state."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ring, state FROM fleet_rings WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {r["ring"]: r["state"] for r in rows}


def _busy(fleet: str, row: sqlite3.Row) -> TargetBusy:
    if row["status"] == RunStatus.RUNNING:
        advice = "wait for it, or 'zdu fleet halt' it"
    else:
        advice = "continue it with 'zdu fleet resume FLEET'"
    return TargetBusy(
        f"fleet {fleet!r} has run {row['id']} {row['status']} (owner pid {row['owner_pid']} on "
        f"{row['owner_host']}); {advice}"
    )


def _alive(host: str, pid: int, started: float) -> bool:
    if host != socket.gethostname():
        return True  # another machine's process: assume it lives
    return process_alive(pid, started)


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        fleet=row["fleet"],
        release=row["release"],
        status=row["status"],
        reason=row["reason"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        owner_pid=row["owner_pid"],
        halt_requested=row["halt_requested"],
    )
