"""The ``sql`` runner on SQLite and on a real PostgreSQL server: split, idempotence, lock, failures."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zdu.config import load_config
from zdu.errors import ConfigError
from zdu.migrations import MigrationEnv, MigrationError, MigrationRunner, Stage
from zdu.registry import get_plugin_manager
from zdu_migrations.sql import SqlRunner

from .conftest import DatabaseUnderTest, RecordedContext, postgres_connection, write_migrations

MakeRunner = Callable[..., SqlRunner]
MakeContext = Callable[..., RecordedContext]

# Written out of order on purpose: the runner sorts by timestamp.
PRE = {
    "20231016000000_add_path_to_projects": "ALTER TABLE projects ADD COLUMN path varchar(255);",
    "20231001000000_create_projects": (
        "-- the base schema\n"
        "CREATE TABLE projects (id integer PRIMARY KEY, name text NOT NULL, legacy_path text);\n"
        "INSERT INTO projects (id, name, legacy_path) VALUES (1, 'Demo; with a semicolon', 'a/b');\n"
    ),
}
POST = {"20231016000001_drop_legacy_path": "ALTER TABLE projects DROP COLUMN legacy_path;"}


def test_pre_and_post_run_separately_in_timestamp_order(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE, POST))
    assert isinstance(runner, MigrationRunner)
    assert runner.pending(Stage.PRE) == [
        "20231001000000_create_projects",
        "20231016000000_add_path_to_projects",
    ]
    assert runner.pending(Stage.POST) == ["20231016000001_drop_legacy_path"]

    recorded = make_context()
    applied = runner.run(Stage.PRE, recorded.ctx)

    assert applied == ["20231001000000_create_projects", "20231016000000_add_path_to_projects"]
    assert database.columns("projects") == ["id", "name", "legacy_path", "path"]
    assert database.query("SELECT name FROM projects") == [("Demo; with a semicolon",)]
    assert runner.pending(Stage.PRE) == []
    assert runner.pending(Stage.POST) == ["20231016000001_drop_legacy_path"]
    steps = [(e.kind, e.data.get("migration")) for e in recorded.events if e.kind.startswith("step-")]
    assert steps == [
        ("step-started", "20231001000000_create_projects"),
        ("step-finished", "20231001000000_create_projects"),
        ("step-started", "20231016000000_add_path_to_projects"),
        ("step-finished", "20231016000000_add_path_to_projects"),
    ]

    assert runner.run(Stage.POST, make_context().ctx) == ["20231016000001_drop_legacy_path"]
    assert database.columns("projects") == ["id", "name", "path"]
    assert database.recorded() == ["20231001000000", "20231016000000", "20231016000001"]
    assert runner.pending(Stage.POST) == []


def test_a_second_run_applies_nothing(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE, POST))
    runner.run(Stage.PRE, make_context().ctx)
    again = make_context()

    assert runner.run(Stage.PRE, again.ctx) == []
    assert "step-started" not in again.kinds()
    assert database.recorded() == ["20231001000000", "20231016000000"]
    # A new runner on the same database (another zdu process) agrees.
    fresh = make_runner(database.url, tmp_path / "app")
    assert fresh.run(Stage.PRE, make_context().ctx) == []
    assert fresh.pending(Stage.POST) == ["20231016000001_drop_legacy_path"]


def test_pending_changes_nothing(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE, POST))

    assert len(runner.pending(Stage.PRE)) == 2

    if database.kind == "sqlite":
        assert not (tmp_path / "gitlab.sqlite").exists()
    else:
        assert "schema_migrations" not in database.tables()


def test_a_failing_migration_leaves_the_schema_as_before_it(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    root = write_migrations(
        tmp_path / "app",
        {
            "20230101000000_create_first": "CREATE TABLE first_table (id integer);",
            "20230102000000_create_second": (
                "CREATE TABLE second_table (id integer);\n"
                "INSERT INTO second_table VALUES (1);\n"
                "INSERT INTO no_such_table VALUES (1);\n"
            ),
            "20230103000000_create_third": "CREATE TABLE third_table (id integer);",
        },
    )
    runner = make_runner(database.url, root)
    recorded = make_context()

    with pytest.raises(MigrationError) as failure:
        runner.run(Stage.PRE, recorded.ctx)

    message = str(failure.value)
    assert str(root / "db" / "migrate" / "20230102000000_create_second.sql") in message
    assert "no_such_table" in message
    assert "rolled back" in message and "20230101000000_create_first" in message
    tables = database.tables()
    assert "first_table" in tables
    assert "second_table" not in tables and "third_table" not in tables
    assert database.recorded() == ["20230101000000"]
    assert runner.pending(Stage.PRE) == ["20230102000000_create_second", "20230103000000_create_third"]
    failed = [e for e in recorded.events if e.kind == "step-failed"]
    assert len(failed) == 1 and failed[0].data["migration"] == "20230102000000_create_second"
    assert "no_such_table" in failed[0].message


def _many_migrations(count: int) -> dict[str, str]:
    migrations = {"20230100000000_create_log": "CREATE TABLE migration_log (name varchar(64));"}
    for index in range(1, count + 1):
        name = f"202301{index:02d}000000_step_{index}"
        migrations[name] = (
            f"CREATE TABLE table_{index} (id integer);\nINSERT INTO migration_log VALUES ('{name}');\n"
        )
    return migrations


def test_concurrent_runners_apply_each_migration_once(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    root = write_migrations(tmp_path / "app", _many_migrations(20))
    runners = [make_runner(database.url, root) for _ in range(3)]
    start = threading.Barrier(len(runners))
    results: list[list[str]] = [[] for _ in runners]
    errors: list[BaseException] = []

    def migrate(index: int) -> None:
        try:
            start.wait()
            results[index] = runners[index].run(Stage.PRE, make_context().ctx)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(i,)) for i in range(len(runners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(_many_migrations(20))
    logged = [row[0] for row in database.query("SELECT name FROM migration_log")]
    assert sorted(logged) == sorted(name for name in _many_migrations(20) if "step" in name)
    assert len(database.recorded()) == 21


RUN_IN_A_PROCESS = """
import json, sys
from pathlib import Path
from zdu.migrations import MigrationEnv, Stage
from zdu.model import Target
from zdu.secret import Secret
from zdu_migrations.sql import SqlRunner, SqlRunnerConfig

url, path = sys.stdin.read().split("\\n")[:2]
env = MigrationEnv(Target(name="t", platform="local", version="16.5.0"), None, Path(path))
runner = SqlRunner(SqlRunnerConfig(database=Secret(url), path=Path(path)), env)
print(json.dumps(runner.apply(Stage.PRE)))
"""


def test_runners_in_separate_processes_apply_each_migration_once(
    database: DatabaseUnderTest, tmp_path: Path
) -> None:
    root = write_migrations(tmp_path / "app", _many_migrations(15))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_IN_A_PROCESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(f"{database.url}\n{root}\n", timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], [err for _, err in outputs]
    applied = [name for out, _ in outputs for name in json.loads(out)]
    assert sorted(applied) == sorted(_many_migrations(15))
    assert len(database.query("SELECT name FROM migration_log")) == 15


def _hold_lock(database: DatabaseUnderTest, tmp_path: Path) -> Callable[[], None]:
    """Take the runners' lock as another runner would; return the function that releases it."""
    if database.kind == "sqlite":
        descriptor = os.open(tmp_path / "gitlab.sqlite.migrate.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        return lambda: os.close(descriptor)
    from zdu_migrations.databases import ADVISORY_LOCK_KEY  # noqa: PLC0415

    manager = postgres_connection(database.url)
    connection = manager.__enter__()
    connection.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    return lambda: manager.__exit__(None, None, None)


def _wait_until_waiting_on_lock(database: DatabaseUnderTest, thread: threading.Thread) -> None:
    """Wait (bounded) until the runner thread is blocked on the lock; PostgreSQL shows it in pg_locks."""
    if database.kind != "postgresql":
        thread.join(0.5)  # SQLite: nothing to observe; the thread must still be waiting
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = database.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        if rows[0][0] >= 1:
            return
        time.sleep(0.05)
    pytest.fail("the runner never waited for the advisory lock")


def test_a_runner_waits_while_another_holds_the_lock(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE))
    release = _hold_lock(database, tmp_path)
    results: list[list[str]] = []
    try:
        thread = threading.Thread(target=lambda: results.append(runner.run(Stage.PRE, make_context().ctx)))
        thread.start()
        _wait_until_waiting_on_lock(database, thread)
        assert thread.is_alive() and results == []
    finally:
        release()
    thread.join(60)

    assert results == [["20231001000000_create_projects", "20231016000000_add_path_to_projects"]]


def test_a_runner_gives_up_after_lock_timeout(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE), lock_timeout=0.2)
    release = _hold_lock(database, tmp_path)
    try:
        with pytest.raises(MigrationError, match="another runner has held the migration lock"):
            runner.run(Stage.PRE, make_context().ctx)
    finally:
        release()
    assert runner.pending(Stage.PRE) == [
        "20231001000000_create_projects",
        "20231016000000_add_path_to_projects",
    ]


def test_neither_stage_is_reversible(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE, POST))
    assert runner.reversible(Stage.PRE) is False
    assert runner.reversible(Stage.POST) is False


def test_a_dry_run_applies_nothing(
    database: DatabaseUnderTest, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext
) -> None:
    runner = make_runner(database.url, write_migrations(tmp_path / "app", PRE))
    recorded = make_context()
    recorded.ctx.dry_run = True
    assert runner.run(Stage.PRE, recorded.ctx) == []
    assert len(runner.pending(Stage.PRE)) == 2


def test_the_password_never_shows(
    postgres_server, tmp_path: Path, make_runner: MakeRunner, make_context: MakeContext, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    password = postgres_server.password
    url = postgres_server.url(postgres_server.create_database())
    assert password not in url  # quoted in the URL: both forms must stay hidden
    hidden = {password, url.split(":")[2].split("@")[0]}
    root = write_migrations(tmp_path / "app", {"20230101000000_broken": "SELECT * FROM nowhere;"})
    shown: list[str] = []

    recorded = make_context()
    with pytest.raises(MigrationError) as failed:
        make_runner(url, root).run(Stage.PRE, recorded.ctx)
    shown += [str(failed.value), recorded.text()]
    assert "nowhere" in str(failed.value) and "***" in str(failed.value)

    wrong = url.replace(url.split(":")[2].split("@")[0], "not-the-password")
    with pytest.raises(MigrationError) as refused:
        make_runner(wrong, root).pending(Stage.PRE)
    shown.append(str(refused.value))
    assert "password authentication failed" in str(refused.value)
    assert "not-the-password" not in str(refused.value)

    with pytest.raises(ConfigError) as bad:
        make_runner(url.replace("postgresql://", "mysql://"), root)
    shown.append(str(bad.value))

    config = tmp_path / "cell.toml"
    config.write_text(
        "[target]\nname = 'cell'\nplatform = 'local'\nversion = '16.5.0'\n[release]\nversion = '16.6.0'\n"
        f"[strategy]\nname = 'rolling'\n[migrations]\nname = 'sql'\ndatabase = {json.dumps(url)}\n"
        f"path = 'app'\n"
    )
    shown.append(json.dumps(load_config(config, get_plugin_manager()).redacted()))
    shown.append(caplog.text)

    for text in shown:
        for secret in hidden:
            assert secret not in text


def test_configured_through_the_registry_with_a_path_relative_to_the_config(
    tmp_path: Path, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_migrations(tmp_path / "app", PRE, POST)
    database = tmp_path / "data" / "gitlab.sqlite"
    database.parent.mkdir()
    config_file = tmp_path / "cell.toml"
    config_file.write_text(
        "[target]\nname = 'cell'\nplatform = 'local'\nversion = '16.5.0'\n[release]\nversion = '16.6.0'\n"
        f"[strategy]\nname = 'rolling'\n[migrations]\nname = 'sql'\ndatabase = 'sqlite://{database}'\n"
        "path = 'app'\nlock_timeout = 5\n"
    )
    config = load_config(config_file, get_plugin_manager())
    assert config.migrations is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = MigrationEnv(config.target, None, tmp_path / "state", config_dir=tmp_path)

    monkeypatch.chdir(elsewhere)  # the current directory plays no part when config_dir is known
    runner = config.migrations.build(env)
    assert isinstance(runner, SqlRunner)
    assert runner.root == tmp_path / "app"
    assert runner.run(Stage.PRE, make_context().ctx) == [
        "20231001000000_create_projects",
        "20231016000000_add_path_to_projects",
    ]
    assert config.redacted()["migrations"]["database"] == "***"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"database": "sqlite://relative.db"}, "sqlite:///ABSOLUTE/PATH"),
        ({"database": "mysql://u:p@h/db"}, "is not a database URL"),
        ({"database": 5}, "migrations.database: expected a string (a secret, not shown), got an int"),
        ({"lock_timeout": 0}, "lock_timeout must be positive"),
        ({"path": "missing"}, "is not a directory"),
        ({"unknown": 1}, "migrations: unknown field 'unknown'"),
        (
            {"lock_retries": "sometimes"},
            "lock_retries must be one of 'marked', 'all', 'none', got 'sometimes'",
        ),
        ({"lock_retry_attempts": 0}, "lock_retry_attempts must be 1 or more, got 0"),
        ({"lock_retry_lock_timeout": -1}, "lock_retry_lock_timeout must be positive"),
        (
            {"wait_for_background_migrations": "yes"},
            "migrations.wait_for_background_migrations: expected true",
        ),
        (
            {"background_migrations_timeout": 0},
            "migrations.background_migrations_timeout: expected a positive",
        ),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, options: dict[str, object], expected: str) -> None:
    write_migrations(tmp_path / "app", PRE)
    migrations = {"name": "sql", "database": f"sqlite://{tmp_path / 'db.sqlite'}", "path": "app", **options}
    raw = {
        "target": {"name": "cell", "platform": "local", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling"},
        "migrations": migrations,
    }
    env_dir = tmp_path
    with pytest.raises(ConfigError) as error:
        config = load_config(raw, get_plugin_manager())
        assert config.migrations is not None
        config.migrations.build(MigrationEnv(config.target, None, tmp_path / "state", config_dir=env_dir))
    assert expected in str(error.value)
    assert "p@h" not in str(error.value)


def test_badly_named_and_duplicate_files_are_refused(tmp_path: Path, make_runner: MakeRunner) -> None:
    url = f"sqlite://{tmp_path / 'db.sqlite'}"
    root = write_migrations(tmp_path / "a", {"20230101000000_ok": "SELECT 1;"})
    (root / "db" / "migrate" / "README.md").write_text("not a migration: ignored")
    assert make_runner(url, root).pending(Stage.PRE) == ["20230101000000_ok"]

    (root / "db" / "migrate" / "AddThing.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"AddThing.sql: the name must be <timestamp>_<name>.sql"):
        make_runner(url, root).pending(Stage.PRE)

    duplicate = write_migrations(
        tmp_path / "b", {"20230101000000_one": "SELECT 1;"}, {"20230101000000_two": "SELECT 2;"}
    )
    with pytest.raises(MigrationError, match="have the same version 20230101000000"):
        make_runner(url, duplicate).pending(Stage.POST)


def test_sqlite_refuses_a_migration_that_ends_its_transaction(
    tmp_path: Path, make_runner: MakeRunner
) -> None:
    root = write_migrations(tmp_path / "app", {"20230101000000_commits": "CREATE TABLE a (id int);\nCOMMIT;"})
    runner = make_runner(f"sqlite://{tmp_path / 'db.sqlite'}", root)
    with pytest.raises(MigrationError, match="COMMIT is not allowed"):
        runner.apply(Stage.PRE)
    assert runner.pending(Stage.PRE) == ["20230101000000_commits"]


def test_sqlite_keeps_a_trigger_body_whole(tmp_path: Path, make_runner: MakeRunner) -> None:
    root = write_migrations(
        tmp_path / "app",
        {
            "20230101000000_trigger": (
                "CREATE TABLE a (id int, n int);\n"
                "CREATE TRIGGER a_count AFTER INSERT ON a BEGIN\n"
                "  UPDATE a SET n = 1 WHERE id = NEW.id;\n"
                "END;\n"
                "INSERT INTO a (id) VALUES (7);\n"
            )
        },
    )
    make_runner(f"sqlite://{tmp_path / 'db.sqlite'}", root).apply(Stage.PRE)
    database = DatabaseUnderTest("sqlite", f"sqlite://{tmp_path / 'db.sqlite'}", None)
    assert database.query("SELECT id, n FROM a") == [(7, 1)]


def test_apply_through_a_version_sets_up_an_older_schema(tmp_path: Path, make_runner: MakeRunner) -> None:
    runner = make_runner(f"sqlite://{tmp_path / 'db.sqlite'}", write_migrations(tmp_path / "app", PRE))
    assert runner.apply(Stage.PRE, through="20231001000000") == ["20231001000000_create_projects"]
    assert runner.pending(Stage.PRE) == ["20231016000000_add_path_to_projects"]


def test_postgresql_without_psycopg_names_the_extra(
    tmp_path: Path, make_runner: MakeRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    root = write_migrations(tmp_path / "app", PRE)
    with pytest.raises(ConfigError, match=r"needs psycopg: install zdu\[postgresql\]") as error:
        make_runner("postgresql://zdu:hunter2@db.example:5432/gitlab", root)
    assert "hunter2" not in str(error.value) and "postgresql://***@db.example" in str(error.value)
