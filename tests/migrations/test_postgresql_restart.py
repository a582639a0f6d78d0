"""PostgreSQL restarts while migrations run: the migration in flight is rolled back and named, the run
stops with a clear error, and the next run, once the server is back, applies what is left."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.migrations.conftest import PostgresServer, RecordedContext, write_migrations
from zdu.migrations import Stage
from zdu.plugins import MigrationError
from zdu_migrations.sql import SqlRunner

pytestmark = pytest.mark.slow


def test_a_restart_mid_migration_rolls_it_back_names_it_and_the_next_run_finishes(
    postgres_server: PostgresServer,
    tmp_path: Path,
    make_runner: Callable[..., SqlRunner],
    make_context: Callable[..., RecordedContext],
) -> None:
    url = postgres_server.url(postgres_server.create_database())
    root = write_migrations(
        tmp_path / "app",
        {
            "20230101000000_create_first": "CREATE TABLE first_table (id integer);",
            # long enough for the restart to land inside it, after its table is created
            "20230102000000_slow_second": "CREATE TABLE second_table (id integer);\nSELECT pg_sleep(5);",
            "20230103000000_create_third": "CREATE TABLE third_table (id integer);",
        },
    )
    runner = make_runner(url, root)
    recorded = make_context()

    def restart_during_the_second() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(e.kind == "step-started" and "slow_second" in e.message for e in recorded.events):
                time.sleep(0.5)
                postgres_server.restart()
                return
            time.sleep(0.02)

    restarter = threading.Thread(target=restart_during_the_second)
    restarter.start()
    try:
        with pytest.raises(MigrationError) as failure:
            runner.run(Stage.PRE, recorded.ctx)
    finally:
        restarter.join()
    message = str(failure.value)
    assert "20230102000000_slow_second" in message and "rolled back" in message, message
    assert "terminating connection" in message, message  # what happened, in the server's words
    assert postgres_server.password not in message
    # the restart cut the migration in flight: its transaction was rolled back, nothing of it stayed
    assert runner.pending(Stage.PRE) == ["20230102000000_slow_second", "20230103000000_create_third"]
    # the next run, with the server back, applies what is left, once each
    assert runner.run(Stage.PRE, make_context().ctx) == [
        "20230102000000_slow_second",
        "20230103000000_create_third",
    ]
    assert runner.pending(Stage.PRE) == []
