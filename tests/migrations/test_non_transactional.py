"""Migrations marked ``disable_ddl_transaction``: outside a transaction, and no INVALID index left behind.

A failed ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index in PostgreSQL (the control below shows
the same statement doing so when run by hand); the runner drops it, retries when the failure was a
lock timeout, and gives the exact command when it could not drop it in time, in which case the next
run drops it before creating the index again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zdu.migrations import MigrationError, Stage
from zdu_migrations.sql import SqlRunner

from .conftest import PostgresServer, RecordedContext, postgres_connection, write_migrations

MakeRunner = Callable[..., SqlRunner]
MakeContext = Callable[..., RecordedContext]

UNIQUE_INDEX = (
    "-- zdu: disable_ddl_transaction\n"
    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS index_projects_on_name ON projects (name);\n"
)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    url = postgres_server.url(postgres_server.create_database())
    with postgres_connection(url) as connection:
        connection.execute("CREATE TABLE projects (id bigserial PRIMARY KEY, name text NOT NULL)")
        connection.execute("INSERT INTO projects (name) SELECT 'p' || i FROM generate_series(1, 50) AS i")
    return url


def indexes(url: str) -> dict[str, bool]:
    """Every index on projects: name -> valid."""
    with postgres_connection(url) as connection:
        rows = connection.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'projects'::regclass"
        ).fetchall()
    return {str(name): bool(valid) for name, valid in rows}


def hold_row_exclusive(url: str, seconds: float, taken: threading.Event) -> None:
    """An open transaction that wrote to projects (ROW EXCLUSIVE): CREATE INDEX CONCURRENTLY waits for it."""
    with postgres_connection(url) as connection, connection.transaction():
        connection.execute("INSERT INTO projects (name) VALUES ('held')")
        taken.set()
        time.sleep(seconds)


def test_the_instrument_sees_an_invalid_index_when_nobody_cleans_up(pg_url: str) -> None:
    """The control: the failing statement, run by hand, leaves an INVALID index that the check finds."""
    with postgres_connection(pg_url) as connection:
        connection.execute("INSERT INTO projects (name) VALUES ('p1')")  # a duplicate
        with pytest.raises(Exception, match="could not create unique index"):
            connection.execute("CREATE UNIQUE INDEX CONCURRENTLY index_projects_on_name ON projects (name)")
    assert indexes(pg_url)["index_projects_on_name"] is False


def test_a_failed_concurrent_index_leaves_no_invalid_index(
    pg_url: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    with postgres_connection(pg_url) as connection:
        connection.execute("INSERT INTO projects (name) VALUES ('p1')")  # a duplicate
    runner = make_runner(
        pg_url, write_migrations(tmp_path / "app", {"20240101000000_index_names": UNIQUE_INDEX})
    )
    recorded = make_context()

    with pytest.raises(MigrationError) as failed:
        runner.run(Stage.PRE, recorded.ctx)

    message = str(failed.value)
    assert "20240101000000_index_names" in message and "could not create unique index" in message
    assert "the INVALID index it left was dropped: public.index_projects_on_name" in message
    assert indexes(pg_url) == {"projects_pkey": True}  # no INVALID index left
    assert runner.pending(Stage.PRE) == ["20240101000000_index_names"]
    [dropped] = [e for e in recorded.events if e.kind == "invalid-index-dropped"]
    assert dropped.data["command"] == "DROP INDEX CONCURRENTLY IF EXISTS public.index_projects_on_name;"


def test_a_concurrent_index_that_times_out_on_a_lock_is_dropped_and_retried(
    pg_url: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    migration = "-- zdu: enable_lock_retries lock_timeout=0.2\n" + UNIQUE_INDEX
    runner = make_runner(
        pg_url, write_migrations(tmp_path / "app", {"20240101000000_index_names": migration})
    )
    recorded = make_context()
    taken = threading.Event()
    holder = threading.Thread(target=hold_row_exclusive, args=(pg_url, 2.0, taken))
    holder.start()
    try:
        assert taken.wait(10)
        assert runner.run(Stage.PRE, recorded.ctx) == ["20240101000000_index_names"]
    finally:
        holder.join(30)

    assert indexes(pg_url) == {"projects_pkey": True, "index_projects_on_name": True}
    kinds = recorded.kinds()
    assert kinds.count("lock-retry") >= 1 and kinds.count("invalid-index-dropped") >= 1
    assert kinds.index("invalid-index-dropped") < kinds.index("step-finished")


def test_an_invalid_index_that_cannot_be_dropped_in_time_is_reported_then_dropped_by_the_next_run(
    pg_url: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    migration = "-- zdu: enable_lock_retries lock_timeout=0.2 attempts=1\n" + UNIQUE_INDEX
    root = write_migrations(tmp_path / "app", {"20240101000000_index_names": migration})
    runner = make_runner(pg_url, root, invalid_index_drop_timeout=0.3)
    taken = threading.Event()
    holder = threading.Thread(target=hold_row_exclusive, args=(pg_url, 3.0, taken))
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(MigrationError) as failed:
            runner.run(Stage.PRE, make_context().ctx)
        # while the long transaction lasts, the INVALID index is there, and the error says how to drop it
        assert indexes(pg_url).get("index_projects_on_name") is False
    finally:
        holder.join(30)
    assert "(run DROP INDEX CONCURRENTLY IF EXISTS public.index_projects_on_name;)" in str(failed.value)

    recorded = make_context()
    assert runner.run(Stage.PRE, recorded.ctx) == ["20240101000000_index_names"]
    assert indexes(pg_url) == {"projects_pkey": True, "index_projects_on_name": True}
    [dropped] = [e for e in recorded.events if e.kind == "invalid-index-dropped"]
    assert "an earlier run left it" in dropped.message


def test_statements_run_outside_a_transaction(
    pg_url: str, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    statements = (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS index_projects_on_id_name ON projects (id, name);\n"
        "-- a comment; with a semicolon\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
    )
    transactional = {"20240101000000_index": statements}
    root = write_migrations(tmp_path / "in_transaction", transactional)
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        make_runner(pg_url, root).run(Stage.PRE, make_context().ctx)

    marked = {"20240101000000_index": "-- zdu: disable_ddl_transaction\n" + statements}
    runner = make_runner(pg_url, write_migrations(tmp_path / "outside", marked))
    assert runner.run(Stage.PRE, make_context().ctx) == ["20240101000000_index"]
    assert indexes(pg_url)["index_projects_on_id_name"] is True
    assert runner.run(Stage.PRE, make_context().ctx) == []


def test_sqlite_runs_them_outside_a_transaction_too(
    tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    # VACUUM cannot run in a transaction: it shows where the statements ran.
    pre = {
        "20240101000000_create": "CREATE TABLE projects (id integer PRIMARY KEY);",
        "20240102000000_vacuum": "-- zdu: disable_ddl_transaction\nVACUUM;\nCREATE INDEX i ON projects (id);",
    }
    url = f"sqlite://{tmp_path / 'gitlab.sqlite'}"
    runner = make_runner(url, write_migrations(tmp_path / "app", pre))
    assert runner.run(Stage.PRE, make_context().ctx) == ["20240101000000_create", "20240102000000_vacuum"]

    unmarked = {"20240103000000_vacuum_again": "VACUUM;"}
    runner = make_runner(url, write_migrations(tmp_path / "app", unmarked))
    with pytest.raises(MigrationError, match="cannot VACUUM from within a transaction"):
        runner.run(Stage.PRE, make_context().ctx)
