"""The demo's background worker: runs batched background migrations, as Sidekiq does in GitLab.

``python -m zdu_demo.demo_worker --database FILE`` watches the demo's SQLite database for active
batched background migrations (GitLab's ``batched_background_migrations`` table, which a 16.6
post-deployment migration fills) and runs each batch by batch: it records a row in
``batched_background_migration_jobs`` for every batch (``min_value``..``max_value`` of the batching
column, ``batch_size`` wide), runs the migration's job on it, marks the job succeeded, sleeps the
migration's ``pause_ms`` and goes on with the next batch; after the last one it marks the migration
``finished``. A job that fails three times marks its migration ``failed`` (GitLab's rule, in short),
and so does an unknown job class. That is the shape of GitLab's batched background migrations, small
enough to watch: the demo's one takes a few seconds, and zdu's preflight check and its wait after
``migrate(post)`` see it from the outside, through the ``sql`` runner.

Options: ``--pause SECONDS`` overrides every migration's pause between batches, ``--poll SECONDS`` is
how often an idle worker looks for work, ``--exit-when-done`` ends the worker once no active migration
is left (otherwise it runs until SIGTERM or SIGINT, which let the batch in progress finish). It prints
one line per batch on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import re
import signal
import sqlite3
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import attrs

__all__ = ["JOBS", "ActiveMigration", "DemoWorker", "main"]

#: GitLab's status codes of a batched background migration and of one of its jobs.
ACTIVE, FINISHED, FAILED = 1, 3, 4
JOB_RUNNING, JOB_FAILED, JOB_SUCCEEDED = 1, 2, 3
#: Attempts of one batch before its migration is marked failed.
MAX_ATTEMPTS = 3

#: A job: given a connection (in a transaction), the table, the column and a batch's bounds.
Job = Callable[[sqlite3.Connection, str, str, int, int], None]


def _backfill_projects_path(
    connection: sqlite3.Connection, table: str, column: str, low: int, high: int
) -> None:
    """Fill ``projects.path`` from the name (16.6's rule) where it is empty, for ids ``low``..``high``."""
    rows = connection.execute(
        f"SELECT {column}, name FROM {table} WHERE {column} BETWEEN ? AND ? AND path IS NULL",  # noqa: S608
        (low, high),
    ).fetchall()
    for key, name in rows:
        path = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
        connection.execute(f"UPDATE {table} SET path = ? WHERE {column} = ? AND path IS NULL", (path, key))  # noqa: S608


#: The job classes this worker knows, by GitLab's ``job_class_name``.
JOBS: dict[str, Job] = {"BackfillProjectsPath": _backfill_projects_path}


@attrs.frozen
class ActiveMigration:
    """One row of ``batched_background_migrations`` with status active."""

    id: int
    job_class_name: str
    table_name: str
    column_name: str
    min_value: int
    max_value: int
    batch_size: int
    pause_ms: int

    @property
    def name(self) -> str:
        """``JobClass on table.column``."""
        return f"{self.job_class_name} on {self.table_name}.{self.column_name}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@attrs.define
class DemoWorker:
    """Runs the active batched background migrations of one SQLite database.

    :ivar database: the SQLite file (it must exist).
    :ivar pause: seconds between two batches; ``None``: each migration's ``pause_ms``.
    :ivar poll: seconds between two looks for work while idle.
    :ivar out: called with each line of progress.
    """

    database: Path
    pause: float | None = None
    poll: float = 0.5
    out: Callable[[str], None] = print
    stop: threading.Event = attrs.field(factory=threading.Event)

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(str(self.database))}?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)

    def active(self) -> list[ActiveMigration]:
        """The active migrations, oldest first (none while the table does not exist yet)."""
        connection = self._connect()
        try:
            try:
                rows = connection.execute(
                    "SELECT id, job_class_name, table_name, column_name, min_value, max_value, batch_size, "
                    "pause_ms FROM batched_background_migrations WHERE status = ? ORDER BY id",
                    (ACTIVE,),
                ).fetchall()
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []
                raise
        finally:
            connection.close()
        return [ActiveMigration(*row) for row in rows]

    def run(self, *, exit_when_done: bool = False) -> int:
        """Work until stopped (or, with ``exit_when_done``, until no active migration is left)."""
        while not self.stop.is_set():
            migrations = self.active()
            if not migrations:
                if exit_when_done:
                    return 0
                self.stop.wait(self.poll)
                continue
            self.migrate(migrations[0])
        return 0

    def migrate(self, migration: ActiveMigration) -> None:
        """Run the batches of ``migration`` left to do, one after the other, until it ends or is stopped."""
        job = JOBS.get(migration.job_class_name)
        if job is None:
            self._set_status(migration, FAILED)
            self.out(f"{migration.name}: failed: unknown job class {migration.job_class_name!r}")
            return
        connection = self._connect()
        try:
            connection.execute(
                "UPDATE batched_background_migrations SET started_at = COALESCE(started_at, ?) WHERE id = ?",
                (_now(), migration.id),
            )
            total = max(1, -(-(migration.max_value - migration.min_value + 1) // migration.batch_size))
            while not self.stop.is_set():
                batch = self._next_batch(connection, migration)
                if batch is None:
                    self._set_status(migration, FINISHED)
                    self.out(f"{migration.name}: finished")
                    return
                job_id, low, high, attempts = batch
                number = (low - migration.min_value) // migration.batch_size + 1
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    job(connection, migration.table_name, migration.column_name, low, high)
                    connection.execute(
                        "UPDATE batched_background_migration_jobs SET status = ?, finished_at = ? "
                        "WHERE id = ?",
                        (JOB_SUCCEEDED, _now(), job_id),
                    )
                    connection.execute("COMMIT")
                except sqlite3.Error as error:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    connection.execute(
                        "UPDATE batched_background_migration_jobs SET status = ? WHERE id = ?",
                        (JOB_FAILED, job_id),
                    )
                    self.out(f"{migration.name}: batch {number}/{total} ({low}-{high}) failed: {error}")
                    if attempts >= MAX_ATTEMPTS:
                        self._set_status(migration, FAILED)
                        self.out(f"{migration.name}: failed after {attempts} attempts of one batch")
                        return
                    continue
                self.out(f"{migration.name}: batch {number}/{total} ({low}-{high}) done")
                pause = self.pause if self.pause is not None else migration.pause_ms / 1000
                self.stop.wait(pause)
        finally:
            connection.close()

    def _next_batch(
        self, connection: sqlite3.Connection, migration: ActiveMigration
    ) -> tuple[int, int, int, int] | None:
        """The next batch to run, recorded as a running job: (job id, low, high, attempt); ``None``: done."""
        failed = connection.execute(
            "SELECT id, min_value, max_value, attempts FROM batched_background_migration_jobs "
            "WHERE batched_background_migration_id = ? AND status != ? ORDER BY min_value LIMIT 1",
            (migration.id, JOB_SUCCEEDED),
        ).fetchone()
        if failed is not None:
            job_id, low, high, attempts = (int(v) for v in failed)
            connection.execute(
                "UPDATE batched_background_migration_jobs SET status = ?, attempts = ?, started_at = ? "
                "WHERE id = ?",
                (JOB_RUNNING, attempts + 1, _now(), job_id),
            )
            return job_id, low, high, attempts + 1
        row = connection.execute(
            "SELECT max(max_value) FROM batched_background_migration_jobs "
            "WHERE batched_background_migration_id = ?",
            (migration.id,),
        ).fetchone()
        low = migration.min_value if row is None or row[0] is None else int(row[0]) + 1
        if low > migration.max_value:
            return None
        high = min(low + migration.batch_size - 1, migration.max_value)
        cursor = connection.execute(
            "INSERT INTO batched_background_migration_jobs "
            "(batched_background_migration_id, min_value, max_value, status, attempts, started_at) "
            "VALUES (?, ?, ?, ?, 1, ?)",
            (migration.id, low, high, JOB_RUNNING, _now()),
        )
        return int(cursor.lastrowid or 0), low, high, 1

    def _set_status(self, migration: ActiveMigration, status: int) -> None:
        connection = self._connect()
        try:
            connection.execute(
                "UPDATE batched_background_migrations SET status = ?, finished_at = ? WHERE id = ?",
                (status, _now(), migration.id),
            )
        finally:
            connection.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m zdu_demo.demo_worker --database FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m zdu_demo.demo_worker",
        description="Run the demo database's batched background migrations, as Sidekiq does for GitLab.",
    )
    parser.add_argument("--database", type=Path, required=True, help="the demo's SQLite file")
    parser.add_argument(
        "--pause", type=float, default=None, help="seconds between batches (default: pause_ms)"
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks for work while idle")
    parser.add_argument("--exit-when-done", action="store_true", help="exit once no active migration is left")
    args = parser.parse_args(argv)
    if not args.database.is_file():
        parser.error(f"--database: {str(args.database)!r} is not a file")
    if args.pause is not None and args.pause < 0:
        parser.error(f"--pause: must be 0 or more, got {args.pause!r}")
    if not args.poll > 0:
        parser.error(f"--poll: must be positive, got {args.poll!r}")
    worker = DemoWorker(
        args.database, pause=args.pause, poll=args.poll, out=lambda line: print(line, flush=True)
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"demo worker: watching {args.database} for batched background migrations", flush=True)
    try:
        return worker.run(exit_when_done=args.exit_when_done)
    except sqlite3.Error as error:
        print(f"demo worker: {args.database}: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
