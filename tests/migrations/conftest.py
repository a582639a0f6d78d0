"""Fixtures for the migration runners: a real PostgreSQL server, SQLite files, migration trees, contexts.

The PostgreSQL server is started once per session with initdb and pg_ctl, on a free loopback port
with password authentication (so that the tests can check that the password never shows), and
stopped at the end. PostgreSQL refuses to run as root: when the tests run as root (CI does), the
server runs as the unprivileged user ``nobody``, in a directory of its own under /tmp.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from zdu.context import UpgradeContext, UpgradeInfo
from zdu.migrations import MigrationEnv
from zdu.model import Event, Release, Target, Version
from zdu.network import free_port
from zdu.secret import Secret
from zdu_migrations.sql import SqlRunner, SqlRunnerConfig

SERVER_USER = "nobody"


def _postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


@attrs.frozen
class PostgresServer:
    """A running PostgreSQL server for the tests: superuser ``zdu`` with a password."""

    port: int
    password: str
    user: str = "zdu"
    #: pg_ctl and the data directory, to restart the server (``None``: not restartable)
    pg_ctl: str | None = None
    data: Path | None = None
    log: Path | None = None

    def restart(self) -> None:
        """Restart the server as an operator would (``pg_ctl restart -m fast``): connections are cut."""
        assert self.pg_ctl is not None and self.data is not None
        subprocess.run(
            _as_server_user(
                [
                    self.pg_ctl,
                    "restart",
                    "-w",
                    "-t",
                    "60",
                    "-m",
                    "fast",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                ]
            ),
            capture_output=True,
            check=True,
        )

    def url(self, dbname: str = "postgres") -> str:
        """A URL with the password in it, as a user would configure it."""
        password = urllib.parse.quote(self.password, safe="")
        return f"postgresql://{self.user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new, empty database; its name."""
        import psycopg  # noqa: PLC0415 - the postgresql extra

        name = f"test_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return name


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server started for this session (skipped only when its binaries are missing)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql)")
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'zdu[postgresql]'")
    # Not under pytest's tmp_path: its parents are root's, closed to the server's user.
    work = Path(tempfile.mkdtemp(prefix="zdu-test-pg-"))
    password = f"pw-{secrets.token_hex(8)}/@:x"
    (work / "password").write_text(password + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        for path in (work, work / "password"):
            os.chown(path, user.pw_uid, user.pw_gid)
    data = work / "data"
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "zdu",
                "--auth=scram-sha-256",
                f"--pwfile={work / 'password'}",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port("127.0.0.1")
    options = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    pg_ctl = str(bin_dir / "pg_ctl")
    started = subprocess.run(
        _as_server_user(
            [pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-l", str(work / "log"), "-o", options]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        if started.returncode != 0:
            log = (work / "log").read_text() if (work / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {started.stdout}{started.stderr}{log}")
        yield PostgresServer(port=port, password=password, pg_ctl=pg_ctl, data=data, log=work / "log")
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "stop", "-w", "-m", "fast", "-D", str(data)]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)


@attrs.frozen
class DatabaseUnderTest:
    """A database a test migrates, with a way to look at it that does not go through the runner."""

    kind: str
    url: str
    password: str | None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (its own connection and transaction)."""
        if self.kind == "sqlite":
            connection = sqlite3.connect(self.url.removeprefix("sqlite://"))
            try:
                return connection.execute(sql).fetchall()
            finally:
                connection.close()
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(sql.encode()).fetchall()

    def tables(self) -> set[str]:
        """The tables in the database."""
        if self.kind == "sqlite":
            return {row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            row[0]
            for row in self.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        }

    def columns(self, table: str) -> list[str]:
        """The columns of ``table``, in order."""
        if self.kind == "sqlite":
            return [row[1] for row in self.query(f"PRAGMA table_info({table})")]
        return [
            row[0]
            for row in self.query(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_name = '{table}' ORDER BY ordinal_position"
            )
        ]

    def recorded(self) -> list[str]:
        """The versions in schema_migrations, sorted."""
        return sorted(str(row[0]) for row in self.query("SELECT version FROM schema_migrations"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUnderTest:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return DatabaseUnderTest("sqlite", f"sqlite://{tmp_path / 'gitlab.sqlite'}", None)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return DatabaseUnderTest("postgresql", server.url(server.create_database()), server.password)


def write_migrations(
    root: Path, pre: dict[str, str] | None = None, post: dict[str, str] | None = None
) -> Path:
    """A migration tree under ``root``: ``{"<version>_<name>": sql}`` for db/migrate and db/post_migrate."""
    for directory, files in (("migrate", pre or {}), ("post_migrate", post or {})):
        stage_dir = root / "db" / directory
        stage_dir.mkdir(parents=True, exist_ok=True)
        for name, sql in files.items():
            (stage_dir / f"{name}.sql").write_text(sql)
    return root


@pytest.fixture
def migration_env(tmp_path: Path) -> MigrationEnv:
    """The environment a runner factory gets (no platform: the sql runner needs none)."""
    return MigrationEnv(
        target=Target(name="test", platform="local", version="16.5.0"),
        platform=None,
        state_dir=tmp_path / "state",
        config_dir=tmp_path,
    )


@pytest.fixture
def make_runner(migration_env: MigrationEnv) -> Callable[..., SqlRunner]:
    """Build a SqlRunner on a database URL and a migration tree."""

    def make(url: str, path: Path, **options: Any) -> SqlRunner:
        return SqlRunner(SqlRunnerConfig(database=Secret(url), path=path, **options), migration_env)

    return make


@attrs.define
class RecordedContext:
    """An UpgradeContext whose events land in a list."""

    ctx: UpgradeContext
    events: list[Event]

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def text(self) -> str:
        """Every event, message and data, as one string (to search for secrets)."""
        return "\n".join(f"{e.kind} {e.message} {e.data!r}" for e in self.events)


@pytest.fixture
def make_context() -> Callable[..., RecordedContext]:
    """Build contexts that record their events (``make_context(platform=...)``)."""

    def make(platform: Any = None) -> RecordedContext:
        events: list[Event] = []

        def record(kind: str, message: str, data: dict[str, Any]) -> None:
            events.append(
                Event(
                    upgrade_id="test",
                    at=0.0,
                    phase=ctx.phase,
                    kind=kind,
                    message=message,
                    data=data,
                )
            )

        ctx = UpgradeContext(
            info=UpgradeInfo("test", "test", "16.5.0", "16.6.0", "rolling"),
            target=Target(name="test", platform="local", version="16.5.0"),
            release=Release(version=Version.parse("16.6.0")),
            from_version=Version.parse("16.5.0"),
            platform=platform,
            record_event=record,
        )
        ctx.phase = "migrate(pre)"
        return RecordedContext(ctx, events)

    return make


@contextlib.contextmanager
def postgres_connection(url: str) -> Iterator[Any]:
    """An autocommit connection to ``url``."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True) as connection:
        yield connection
