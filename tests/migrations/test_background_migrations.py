"""Batched background migrations: the demo's, its worker, and the sql runner that watches them.

The demo migrations of 16.6 create GitLab's ``batched_background_migrations`` tables (a regular
migration) and queue ``BackfillProjectsPath`` (a post-deployment migration); the demo worker, a real
process, runs it batch by batch while the ``sql`` runner reads its status and progress from outside.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zdu.errors import PreflightError
from zdu.migrations import (
    BackgroundMigration,
    BackgroundMigrationSource,
    MigrationError,
    Stage,
    check_background_migrations,
    wait_for_background_migrations,
)
from zdu_demo.demo_app import DEMO_BASE_SCHEMA, DEMO_MIGRATIONS
from zdu_migrations.sql import SqlRunner

from .conftest import DatabaseUnderTest, RecordedContext, postgres_connection

MakeRunner = Callable[..., SqlRunner]
MakeContext = Callable[..., RecordedContext]


class HealthyPlatform:
    """Enough of a platform for UpgradeContext.wait: it is always healthy."""

    def check_health(self) -> list[str]:
        return []


@pytest.fixture
def demo_database(tmp_path: Path, make_runner: MakeRunner) -> tuple[SqlRunner, DatabaseUnderTest]:
    """The demo's SQLite database after the 16.6 upgrade's migrations, both stages."""
    database = tmp_path / "demo.sqlite"
    runner = make_runner(f"sqlite://{database}", DEMO_MIGRATIONS)
    runner.apply(Stage.PRE)
    runner.apply(Stage.POST)
    return runner, DatabaseUnderTest("sqlite", f"sqlite://{database}", None)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start demo workers (``python -m zdu_demo.demo_worker``); each is stopped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(database: Path, *options: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "zdu_demo.demo_worker", "--database", str(database), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def execute(database: DatabaseUnderTest, sql: str) -> None:
    """Run and commit one statement, not through the runner."""
    if database.kind == "sqlite":
        with sqlite3.connect(file_of(database)) as connection:
            connection.execute(sql)
        return
    with postgres_connection(database.url) as connection:
        connection.execute(sql.encode())


def file_of(database: DatabaseUnderTest) -> Path:
    return Path(database.url.removeprefix("sqlite://"))


def test_the_sql_runner_sees_the_queued_migration_and_the_preflight_refuses(
    demo_database: tuple[SqlRunner, DatabaseUnderTest],
) -> None:
    runner, _ = demo_database
    assert isinstance(runner, BackgroundMigrationSource)
    assert runner.background_migrations() == [
        BackgroundMigration("BackfillProjectsPath", "projects", "id", "active", progress=0.0)
    ]
    with pytest.raises(PreflightError) as refused:
        check_background_migrations(runner)
    assert (
        "1 unfinished batched background migration: BackfillProjectsPath on projects.id (active, 0%)"
        in str(refused.value)
    )


def test_the_worker_runs_it_batch_by_batch_while_the_runner_watches_its_progress(
    demo_database: tuple[SqlRunner, DatabaseUnderTest], start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    runner, database = demo_database
    assert database.query("SELECT count(*) FROM projects WHERE path IS NULL") == [(100,)]
    worker = start_worker(file_of(database), "--exit-when-done", "--pause", "0.2")
    seen: list[float] = []
    while worker.poll() is None:
        for migration in runner.background_migrations():
            if migration.progress is not None and (not seen or migration.progress != seen[-1]):
                seen.append(migration.progress)
        time.sleep(0.05)
    output, _ = worker.communicate()

    assert worker.returncode == 0, output
    assert "BackfillProjectsPath on projects.id: batch 10/10 (91-100) done" in output
    assert output.rstrip().endswith("BackfillProjectsPath on projects.id: finished")
    # progress was seen growing from outside, batch after batch
    assert len(seen) >= 3 and seen == sorted(seen) and 0 < seen[-2] < seen[-1] <= 1, seen
    # every project has its path, by 16.6's rule
    assert database.query("SELECT count(*) FROM projects WHERE path IS NULL") == [(0,)]
    assert database.query("SELECT path FROM projects WHERE id IN (1, 42) ORDER BY id") == [
        ("demo-project",),
        ("project-42",),
    ]
    assert database.query(
        "SELECT count(*), min(status), max(status) FROM batched_background_migration_jobs"
    ) == [(10, 3, 3)]
    assert runner.background_migrations() == []
    check_background_migrations(runner)  # the next upgrade may start


def test_the_wait_ends_when_the_worker_is_done(
    demo_database: tuple[SqlRunner, DatabaseUnderTest],
    start_worker: Callable[..., subprocess.Popen[str]],
    make_context: MakeContext,
) -> None:
    runner, database = demo_database
    recorded = make_context(platform=HealthyPlatform())
    recorded.ctx.phase = "migrate(post)"
    worker = start_worker(file_of(database), "--pause", "0.2")
    wait_for_background_migrations(runner, recorded.ctx, timeout=120, interval=0.1)

    [(finished_at,)] = database.query("SELECT finished_at FROM batched_background_migrations")
    assert finished_at is not None
    events = [e for e in recorded.events if e.kind == "background-migrations"]
    progress = [e.data["unfinished"][0]["progress"] for e in events if e.data["unfinished"]]
    assert len(progress) >= 3 and progress == sorted(progress), progress
    assert events[-1].data["unfinished"] == [] and events[-1].data["waited_s"] > 1.0
    assert database.query("SELECT count(*) FROM projects WHERE path IS NULL") == [(0,)]
    assert worker.poll() is None  # the worker keeps watching for more


def test_a_stopped_worker_leaves_it_unfinished_and_the_next_one_goes_on(
    demo_database: tuple[SqlRunner, DatabaseUnderTest], start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    runner, database = demo_database
    first = start_worker(file_of(database), "--pause", "0.3")
    deadline = time.monotonic() + 60
    while not database.query("SELECT 1 FROM batched_background_migration_jobs WHERE status = 3 LIMIT 1"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.terminate()
    first.communicate(timeout=30)
    assert first.returncode == 0
    [left] = runner.background_migrations()
    assert left.status == "active" and left.progress is not None and 0 < left.progress < 1

    second = start_worker(file_of(database), "--exit-when-done", "--pause", "0")
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 0 and "batch 1/10" not in output  # it went on where the first stopped
    assert runner.background_migrations() == []
    assert database.query("SELECT count(*) FROM projects WHERE path IS NULL") == [(0,)]


def test_a_failed_background_migration_stops_the_wait(
    demo_database: tuple[SqlRunner, DatabaseUnderTest],
    start_worker: Callable[..., subprocess.Popen[str]],
    make_context: MakeContext,
) -> None:
    runner, database = demo_database
    execute(database, "UPDATE batched_background_migrations SET job_class_name = 'NoSuchJob'")
    worker = start_worker(file_of(database), "--exit-when-done")
    output, _ = worker.communicate(timeout=60)
    assert "NoSuchJob on projects.id: failed: unknown job class 'NoSuchJob'" in output
    with pytest.raises(MigrationError, match=r"failed: NoSuchJob on projects.id \(failed"):
        wait_for_background_migrations(runner, make_context(platform=HealthyPlatform()).ctx, timeout=60)


def test_the_runner_reads_them_on_postgresql_and_sqlite_alike(
    database: DatabaseUnderTest, make_runner: MakeRunner
) -> None:
    runner = make_runner(database.url, DEMO_MIGRATIONS)
    runner.apply(Stage.PRE, through=DEMO_BASE_SCHEMA)
    assert runner.background_migrations() == []  # no table yet: none
    runner.apply(Stage.PRE)
    assert runner.background_migrations() == []  # the table, empty
    runner.apply(Stage.POST)
    [queued] = runner.background_migrations()
    assert (queued.job_class_name, queued.status, queued.progress) == ("BackfillProjectsPath", "active", 0.0)

    statements = [
        "INSERT INTO batched_background_migration_jobs (id, batched_background_migration_id, min_value, "
        f"max_value, status) VALUES ({i + 1}, 1, {i * 10 + 1}, {i * 10 + 10}, {3 if i < 4 else 1})"
        for i in range(5)
    ]
    for statement in statements:
        execute(database, statement)
    [running] = runner.background_migrations()
    assert running.progress == pytest.approx(0.4)  # 4 of 10 batches succeeded; the 5th still runs
    execute(database, "UPDATE batched_background_migrations SET status = 6")  # finalized
    assert runner.background_migrations() == []
