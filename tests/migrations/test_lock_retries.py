"""Lock retries on a real PostgreSQL server, under users' reads and writes, beside a negative control.

A transaction holds ``ACCESS SHARE`` on ``projects`` for 5 s, as a long report query would, while a
migration adds a column. Without lock retries the ``ALTER TABLE`` queues for ``ACCESS EXCLUSIVE``
behind that transaction and every user query on the table queues behind the ``ALTER TABLE``: they wait
for seconds. With lock retries each attempt gives up after ``lock_timeout`` and lets them through, so
no user query waits much longer than ``lock_timeout``, and the migration succeeds once the lock is gone.
Each user query's latency is measured by the threads that send them (psycopg, one connection each).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from zdu.migrations import MigrationError, Stage
from zdu_migrations.files import parse_directives
from zdu_migrations.sql import SqlRunner

from .conftest import PostgresServer, RecordedContext, postgres_connection, write_migrations

MakeRunner = Callable[..., SqlRunner]
MakeContext = Callable[..., RecordedContext]

LOCK_TIMEOUT = 0.2  # seconds: each attempt's lock_timeout
HOLD = 5.0  # seconds the conflicting lock is held
MARGIN = 0.5  # seconds of scheduling noise allowed on a loaded machine, on top of a query's own time

MIGRATION = {
    "20240101000000_add_archived_to_projects": (
        "-- zdu: enable_lock_retries\nALTER TABLE projects ADD COLUMN archived boolean;\n"
    )
}


@attrs.define
class Query:
    kind: str
    started: float
    latency: float
    error: str | None = None


@attrs.define
class Traffic:
    """Threads reading and writing ``projects``, each query timed; ``acknowledged`` counts inserts."""

    url: str
    queries: list[Query] = attrs.field(factory=list)
    acknowledged: int = 0
    stop: threading.Event = attrs.field(factory=threading.Event)
    threads: list[threading.Thread] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def start(self, writers: int = 2, readers: int = 2) -> Traffic:
        for index in range(writers + readers):
            kind = "insert" if index < writers else "select"
            thread = threading.Thread(target=self._loop, args=(kind, index), name=f"user {kind} {index}")
            thread.start()
            self.threads.append(thread)
        return self

    def _loop(self, kind: str, index: int) -> None:
        with postgres_connection(self.url) as connection:
            number = 0
            while not self.stop.is_set():
                number += 1
                begun = time.monotonic()
                error = None
                try:
                    if kind == "insert":
                        connection.execute(
                            "INSERT INTO projects (name) VALUES (%s)", (f"user-{index}-{number}",)
                        )
                    else:
                        connection.execute(
                            "SELECT id, name FROM projects ORDER BY id DESC LIMIT 5"
                        ).fetchall()
                except Exception as failure:  # every failure is a finding
                    error = f"{type(failure).__name__}: {failure}"
                latency = time.monotonic() - begun
                with self.lock:
                    self.queries.append(Query(kind, begun, latency, error))
                    if kind == "insert" and error is None:
                        self.acknowledged += 1
                time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def max_latency(self, since: float, until: float) -> float:
        """The longest query among those that started in [since, until)."""
        return max((q.latency for q in self.queries if since <= q.started < until), default=0.0)


def hold_access_share(url: str, seconds: float, taken: threading.Event, released: list[float]) -> None:
    """Hold ACCESS SHARE on projects in an open transaction for ``seconds`` (a long reader)."""
    with postgres_connection(url) as connection, connection.transaction():
        connection.execute("SELECT count(*) FROM projects").fetchone()
        taken.set()
        time.sleep(seconds)
    released.append(time.monotonic())


@attrs.frozen
class Outcome:
    baseline_max: float
    during_max: float
    migration_started: float
    migration_ended: float
    lock_released: float
    error: BaseException | None
    inserted_rows: int
    acknowledged: int
    failed_queries: list[Query]
    events: RecordedContext


@pytest.fixture
def users_database(postgres_server: PostgresServer) -> str:
    url = postgres_server.url(postgres_server.create_database())
    with postgres_connection(url) as connection:
        connection.execute("CREATE TABLE projects (id bigserial PRIMARY KEY, name text NOT NULL)")
        connection.execute(
            "INSERT INTO projects (name) SELECT 'seed-' || i FROM generate_series(1, 100) AS i"
        )
    return url


def migrate_under_a_held_lock(
    url: str, runner: SqlRunner, recorded: RecordedContext, *, hold: float = HOLD
) -> Outcome:
    """Users' traffic; a baseline second; a lock held for ``hold`` s; the migration started meanwhile."""
    traffic = Traffic(url).start()
    error: BaseException | None = None
    try:
        time.sleep(1.0)
        baseline_end = time.monotonic()
        taken, released = threading.Event(), []
        holder = threading.Thread(target=hold_access_share, args=(url, hold, taken, released))
        holder.start()
        assert taken.wait(10)
        time.sleep(0.3)
        migration_started = time.monotonic()
        try:
            runner.run(Stage.PRE, recorded.ctx)
        except MigrationError as failure:
            error = failure
        migration_ended = time.monotonic()
        holder.join(30)
        time.sleep(0.5)
    finally:
        traffic.finish()
    with postgres_connection(url) as connection:
        row = connection.execute("SELECT count(*) FROM projects WHERE name LIKE 'user-%'").fetchone()
    return Outcome(
        baseline_max=traffic.max_latency(0.0, baseline_end),
        during_max=traffic.max_latency(migration_started, migration_ended),
        migration_started=migration_started,
        migration_ended=migration_ended,
        lock_released=released[0],
        error=error,
        inserted_rows=int(row[0]) if row else -1,
        acknowledged=traffic.acknowledged,
        failed_queries=[q for q in traffic.queries if q.error is not None],
        events=recorded,
    )


def columns(url: str) -> list[str]:
    with postgres_connection(url) as connection:
        rows = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'projects' "
            "ORDER BY ordinal_position"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_with_lock_retries_users_wait_no_longer_than_the_lock_timeout(
    users_database: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    runner = make_runner(
        users_database,
        write_migrations(tmp_path / "app", MIGRATION),
        lock_retry_lock_timeout=LOCK_TIMEOUT,
        lock_retry_backoff=0.05,
        lock_retry_backoff_max=1.0,
    )
    outcome = migrate_under_a_held_lock(users_database, runner, make_context())
    print(
        f"\nwith lock retries: baseline max {outcome.baseline_max:.3f}s, max user wait while migrating "
        f"{outcome.during_max:.3f}s (lock_timeout {LOCK_TIMEOUT}s)"
    )

    assert outcome.error is None, outcome.error
    assert outcome.failed_queries == []
    assert outcome.inserted_rows == outcome.acknowledged > 0  # no write lost
    # no user query waited longer than lock_timeout plus its own time
    assert outcome.during_max <= LOCK_TIMEOUT + outcome.baseline_max + MARGIN, outcome
    # the migration succeeded, and only after the lock went
    assert "archived" in columns(users_database)
    assert outcome.migration_ended > outcome.lock_released
    retries = [e for e in outcome.events.events if e.kind == "lock-retry"]
    assert len(retries) >= 3
    assert [e.data["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    assert all(
        e.data["lock_timeout_s"] == LOCK_TIMEOUT and "lock timeout" in e.data["error"] for e in retries
    )
    [timing] = [e for e in outcome.events.events if e.kind == "migration-timing"]
    assert timing.data["attempts"] == len(retries) + 1
    assert timing.data["lock_wait_s"] > 3.0  # the migration waited instead of the users


def test_without_lock_retries_users_queue_behind_the_migration(
    users_database: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    """The negative control: the same migration, lock retries off; the same instrument sees users wait."""
    runner = make_runner(users_database, write_migrations(tmp_path / "app", MIGRATION), lock_retries="none")
    outcome = migrate_under_a_held_lock(users_database, runner, make_context())
    print(
        f"\nwithout lock retries: baseline max {outcome.baseline_max:.3f}s, max user wait while migrating "
        f"{outcome.during_max:.3f}s"
    )

    assert outcome.error is None, outcome.error
    assert outcome.inserted_rows == outcome.acknowledged > 0
    assert "archived" in columns(users_database)
    # users queued behind the ALTER TABLE until the long transaction ended
    assert outcome.during_max > LOCK_TIMEOUT + outcome.baseline_max + MARGIN
    assert outcome.during_max > HOLD / 2, outcome
    assert "lock-retry" not in outcome.events.kinds()


def test_gives_up_cleanly_after_its_attempts(
    users_database: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    root = write_migrations(tmp_path / "app", MIGRATION)
    runner = make_runner(
        users_database, root, lock_retry_attempts=3, lock_retry_lock_timeout=0.1, lock_retry_backoff=0.05
    )
    recorded = make_context()
    taken, released = threading.Event(), []
    holder = threading.Thread(target=hold_access_share, args=(users_database, 3.0, taken, released))
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(MigrationError) as failed:
            runner.run(Stage.PRE, recorded.ctx)
    finally:
        holder.join(30)

    message = str(failed.value)
    assert "20240101000000_add_archived_to_projects" in message
    assert "gave up after 3 attempts" in message and "lock timeout" in message
    assert "archived" not in columns(users_database)  # rolled back
    assert runner.pending(Stage.PRE) == ["20240101000000_add_archived_to_projects"]  # not recorded
    retries = [e for e in recorded.events if e.kind == "lock-retry"]
    assert [e.data["attempt"] for e in retries] == [1, 2, 3]
    assert retries[-1].data["next_in_s"] is None
    assert "step-failed" in recorded.kinds()
    # the lock is gone now: the same runner applies it (the migration lock was released too)
    assert runner.run(Stage.PRE, make_context().ctx) == ["20240101000000_add_archived_to_projects"]
    assert "archived" in columns(users_database)


def test_per_migration_options_override_the_runners(
    users_database: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    migration = {
        "20240101000000_add_archived_to_projects": (
            "-- zdu: enable_lock_retries lock_timeout=0.05 attempts=2\n"
            "ALTER TABLE projects ADD COLUMN archived boolean;\n"
        )
    }
    runner = make_runner(
        users_database, write_migrations(tmp_path / "app", migration), lock_retry_attempts=40
    )
    recorded = make_context()
    taken, released = threading.Event(), []
    holder = threading.Thread(target=hold_access_share, args=(users_database, 2.0, taken, released))
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(MigrationError, match="gave up after 2 attempts"):
            runner.run(Stage.PRE, recorded.ctx)
    finally:
        holder.join(30)
    assert {e.data["lock_timeout_s"] for e in recorded.events if e.kind == "lock-retry"} == {0.05}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-- zdu: enable_lock_retries!\nSELECT 1;", "lock_retries=True"),
        ("-- zdu: disable_ddl_transaction\nSELECT 1;", "transactional=False"),
        ("-- zdu: enable_lock_retry\nSELECT 1;", "unknown directive '-- zdu: enable_lock_retry'"),
        ("-- zdu: enable_lock_retries lock_timeout=-1\n", "'lock_timeout=-1' is not valid"),
        ("-- zdu: enable_lock_retries tries=3\n", "unknown option 'tries'"),
    ],
)
def test_directives_are_parsed_and_mistakes_named(text: str, expected: str) -> None:
    try:
        found: Any = parse_directives(Path("m.sql"), text)
    except MigrationError as error:
        found = error
    assert expected in str(found)
    if isinstance(found, MigrationError):
        assert "m.sql" in str(found)
