"""The journal: a durable record of every upgrade, phase and event (SQLite, standard library).

Every phase and step is written *before* it starts and *after* it ends, so that after a crash the
journal says exactly where the upgrade stood. It also holds each Target's lock: a Target with an
upgrade in progress (running, paused or interrupted) refuses a second one, enforced by a unique index
inside one write transaction, so two processes cannot both win.

Nothing secret is written: every string the journal is given (configuration, event messages and
data, the report, the error) goes through :func:`zdu.secret.redact` first, which removes every
registered secret and the credentials of URLs. What it reads back is redacted again (a journal
written by an older zdu), and a journal whose rows do not parse is reported as such
(:class:`~zdu.errors.JournalError`), never as a Python traceback.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil
import tenacity

from zdu.errors import JournalError, TargetBusy
from zdu.journals import default_journal_path, default_state_dir, remember
from zdu.model import Event, UpgradeStatus
from zdu.secret import redact

__all__ = ["Journal", "UpgradeRecord", "default_journal_path", "default_state_dir"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS upgrades (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version TEXT NOT NULL,
    strategy TEXT NOT NULL,
    layers TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    owner_host TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_started REAL NOT NULL,
    config TEXT NOT NULL,
    report TEXT,
    error TEXT,
    in_progress INTEGER GENERATED ALWAYS AS (status IN ('running', 'paused', 'interrupted')) VIRTUAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_upgrade_in_progress_per_target
    ON upgrades (target) WHERE status IN ('running', 'paused', 'interrupted');
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    upgrade_id TEXT NOT NULL REFERENCES upgrades (id),
    at REAL NOT NULL,
    phase TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_upgrade ON events (upgrade_id, seq);
"""


@attrs.frozen
class UpgradeRecord:
    """One upgrade as the journal holds it."""

    id: str
    target: str
    from_version: str
    to_version: str
    strategy: str
    layers: tuple[str, ...]
    status: UpgradeStatus
    phase: str | None
    started_at: float
    finished_at: float | None
    owner_host: str
    owner_pid: int
    config: Mapping[str, Any]
    report: Mapping[str, Any] | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (configuration already redacted)."""
        return {
            "id": self.id,
            "target": self.target,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "strategy": self.strategy,
            "layers": list(self.layers),
            "status": self.status.value,
            "phase": self.phase,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


class Journal:
    """The upgrade journal in one SQLite file. Safe to use from several processes at once."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise JournalError(f"the journal {self.path}: cannot create its directory: {error}") from None
        with self._reading("open"), self._connect() as db:
            _while_locked(db.executescript, _SCHEMA)

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn a journal that is no journal (garbage, a damaged row) into :class:`JournalError`.

        A busy or full disk (:class:`sqlite3.OperationalError`) is left to the caller.
        """
        try:
            yield
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as error:
            raise JournalError(f"journal {self.path}: cannot {what} it: {error}") from None
        except _DamagedRow as error:
            raise JournalError(f"journal {self.path}: cannot {what} it: {error}") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection; a database error (disk full, read-only, damaged file) is a JournalError."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                _while_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
                db.execute("PRAGMA foreign_keys=ON")
                db.row_factory = sqlite3.Row
                yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as error:
            raise JournalError(f"the journal {self.path}: {error}") from None

    # -- upgrades ----------------------------------------------------------------------------------

    def begin(
        self,
        *,
        target: str,
        from_version: str,
        to_version: str,
        strategy: str,
        layers: tuple[str, ...] = (),
        config: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a new running upgrade of ``target`` and return its id.

        Raises :class:`~zdu.errors.TargetBusy` when ``target`` has an upgrade in progress. An upgrade
        whose owning process has died is marked ``interrupted`` first; it still holds the Target
        until it is resumed or rolled back.
        """
        upgrade_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        me = psutil.Process()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._mark_dead_owners(db, target)
                row = db.execute(
                    "SELECT id, status, owner_host, owner_pid FROM upgrades WHERE target = ? AND in_progress",
                    (target,),
                ).fetchone()
                if row is not None:
                    db.execute("COMMIT")  # keep the interrupted mark of a dead owner
                    raise _busy(target, row)
                db.execute(
                    "INSERT INTO upgrades (id, target, from_version, to_version, strategy, layers, status, "
                    "started_at, owner_host, owner_pid, owner_started, config) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (
                        upgrade_id,
                        target,
                        from_version,
                        to_version,
                        strategy,
                        json.dumps(list(layers)),
                        time.time(),
                        socket.gethostname(),
                        me.pid,
                        me.create_time(),
                        _json(redact(dict(config or {}))),
                    ),
                )
                db.execute("COMMIT")
            except TargetBusy:
                raise
            except BaseException:
                db.execute("ROLLBACK")
                raise
        remember(self.path)  # so that 'zdu status' and 'zdu report' find this journal
        return upgrade_id

    def check_free(self, target: str) -> None:
        """Raise :class:`~zdu.errors.TargetBusy` when ``target`` has an upgrade in progress.

        A first check for callers that look at the platform before :meth:`begin`, which checks again
        atomically: a target left half-upgraded by an interrupted upgrade must say so, not look broken.
        """
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            self._mark_dead_owners(db, target)
            row = db.execute(
                "SELECT id, status, owner_host, owner_pid FROM upgrades WHERE target = ? AND in_progress",
                (target,),
            ).fetchone()
            db.execute("COMMIT")
        if row is not None:
            raise _busy(target, row)

    def _mark_dead_owners(self, db: sqlite3.Connection, target: str) -> None:
        rows = db.execute(
            "SELECT id, owner_host, owner_pid, owner_started FROM upgrades "
            "WHERE target = ? AND status = 'running'",
            (target,),
        ).fetchall()
        for row in rows:
            if row["owner_host"] == socket.gethostname() and not process_alive(
                row["owner_pid"], row["owner_started"]
            ):
                db.execute("UPDATE upgrades SET status = 'interrupted' WHERE id = ?", (row["id"],))

    def set_phase(self, upgrade_id: str, phase: str) -> None:
        """Record the phase an upgrade is in."""
        with self._connect() as db:
            db.execute("UPDATE upgrades SET phase = ? WHERE id = ?", (phase, upgrade_id))

    def finish(
        self,
        upgrade_id: str,
        status: UpgradeStatus,
        *,
        report: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record how an upgrade ended (or that it paused)."""
        with self._connect() as db:
            db.execute(
                "UPDATE upgrades SET status = ?, finished_at = ?, report = ?, error = ? WHERE id = ?",
                (
                    status.value,
                    None if status.in_progress else time.time(),
                    _json(redact(dict(report))) if report is not None else None,
                    redact(error) if error is not None else None,
                    upgrade_id,
                ),
            )

    def claim(self, upgrade_id: str) -> None:
        """Make the calling process the owner of a paused or interrupted upgrade, and mark it running."""
        me = psutil.Process()
        with self._connect() as db:
            db.execute(
                "UPDATE upgrades SET status = 'running', owner_host = ?, owner_pid = ?, owner_started = ? "
                "WHERE id = ?",
                (socket.gethostname(), me.pid, me.create_time(), upgrade_id),
            )

    # -- events ------------------------------------------------------------------------------------

    def record(
        self, upgrade_id: str, phase: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> Event:
        """Append an event to an upgrade's history and return it."""
        event = Event(
            upgrade_id=upgrade_id,
            at=time.time(),
            phase=phase,
            kind=kind,
            message=redact(message),
            data=redact(dict(data or {})),
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (upgrade_id, at, phase, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                (upgrade_id, event.at, phase, kind, event.message, _json(event.data)),
            )
        return event

    def events(self, upgrade_id: str) -> list[Event]:
        """Every event of an upgrade, oldest first."""
        with self._reading("read the events of an upgrade in"), self._connect() as db:
            rows = db.execute(
                "SELECT seq, upgrade_id, at, phase, kind, message, data FROM events "
                "WHERE upgrade_id = ? ORDER BY seq",
                (upgrade_id,),
            ).fetchall()
            return [_event(row) for row in rows]

    # -- queries -----------------------------------------------------------------------------------

    def get(self, upgrade_id: str) -> UpgradeRecord | None:
        """One upgrade, or ``None``."""
        with self._reading("read an upgrade in"), self._connect() as db:
            row = db.execute("SELECT * FROM upgrades WHERE id = ?", (upgrade_id,)).fetchone()
            return _record(row) if row is not None else None

    def upgrades(self, target: str | None = None, limit: int = 20) -> list[UpgradeRecord]:
        """The most recent upgrades, newest first, of one target or of all."""
        with self._reading("read the upgrades in"), self._connect() as db:
            for row in db.execute(
                "SELECT target FROM upgrades WHERE status = 'running' GROUP BY target"
            ).fetchall():
                self._mark_dead_owners(db, row["target"])
            if target is None:
                rows = db.execute("SELECT * FROM upgrades ORDER BY started_at DESC LIMIT ?", (limit,))
            else:
                rows = db.execute(
                    "SELECT * FROM upgrades WHERE target = ? ORDER BY started_at DESC LIMIT ?",
                    (target, limit),
                )
            return [_record(row) for row in rows.fetchall()]


def _busy(target: str, row: sqlite3.Row) -> TargetBusy:
    if row["status"] == "running":
        advice = "wait for it to finish"
    else:
        advice = f"resume it with 'zdu resume {row['id']}' or roll it back with 'zdu rollback {row['id']}'"
    return TargetBusy(
        f"target {target!r} has upgrade {row['id']} {row['status']} "
        f"(owner pid {row['owner_pid']} on {row['owner_host']}); {advice}"
    )


def process_alive(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` (its create time) still runs."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, TypeError, ValueError):  # TypeError, ValueError: a damaged journal row
        return False


def _json(value: Any) -> str:
    """``value`` as JSON text; an object JSON does not know is written as its (redacted) ``str``."""
    return json.dumps(value, default=lambda o: redact(str(o)))


class _DamagedRow(Exception):
    """A row of the journal that does not hold what zdu writes there."""


def _column(row: sqlite3.Row, name: str, types: type | tuple[type, ...], where: str) -> Any:
    value = row[name]
    if not isinstance(value, types) or isinstance(value, bool):
        raise _DamagedRow(f"{where}.{name}: unexpected value {redact(repr(value))[:80]}")
    return value


def _decoded(row: sqlite3.Row, name: str, kind: type, where: str, *, optional: bool = False) -> Any:
    text = row[name]
    if optional and not text:
        return None
    try:
        value = json.loads(_column(row, name, str, where))
    except (ValueError, RecursionError):
        raise _DamagedRow(f"{where}.{name}: not valid JSON") from None
    if not isinstance(value, kind):
        raise _DamagedRow(f"{where}.{name}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return redact(value)


def _event(row: sqlite3.Row) -> Event:
    where = f"events[{row['seq']}]"
    return Event(
        upgrade_id=_column(row, "upgrade_id", str, where),
        at=float(_column(row, "at", (int, float), where)),
        phase=_column(row, "phase", str, where),
        kind=_column(row, "kind", str, where),
        message=redact(_column(row, "message", str, where)),
        data=_decoded(row, "data", dict, where),
    )


def _record(row: sqlite3.Row) -> UpgradeRecord:
    where = f"upgrades[{row['id']!r}]"
    layers = _decoded(row, "layers", list, where)
    status = _column(row, "status", str, where)
    try:
        parsed = UpgradeStatus(status)
    except ValueError:
        raise _DamagedRow(f"{where}.status: unknown status {status[:40]!r}") from None
    finished = row["finished_at"]
    return UpgradeRecord(
        id=_column(row, "id", str, where),
        target=_column(row, "target", str, where),
        from_version=_column(row, "from_version", str, where),
        to_version=_column(row, "to_version", str, where),
        strategy=_column(row, "strategy", str, where),
        layers=tuple(str(layer) for layer in layers),
        status=parsed,
        phase=row["phase"] if isinstance(row["phase"], str) else None,
        started_at=float(_column(row, "started_at", (int, float), where)),
        finished_at=float(finished) if isinstance(finished, int | float) else None,
        owner_host=_column(row, "owner_host", str, where),
        owner_pid=_column(row, "owner_pid", int, where),
        config=_decoded(row, "config", dict, where),
        report=_decoded(row, "report", dict, where, optional=True),
        error=redact(row["error"]) if isinstance(row["error"], str) else None,
    )


def _locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


#: Switching a journal to WAL takes a lock SQLite's busy timeout does not wait for: two processes
#: opening a new journal at the same instant (two ``zdu upgrade`` of one target) retry it briefly.
_while_locked = tenacity.Retrying(
    retry=tenacity.retry_if_exception(_locked),
    wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.5),
    stop=tenacity.stop_after_delay(30),
    reraise=True,
)
