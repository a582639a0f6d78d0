"""The databases the ``sql`` runner migrates: SQLite (the embedded default) and PostgreSQL.

Both keep GitLab's ``schema_migrations(version, finished_at)`` table, run each migration in its own
transaction together with the row that records it, and serialise runners with a lock held for the
whole run:

* **PostgreSQL**: a session-level advisory lock, ``pg_advisory_lock(ADVISORY_LOCK_KEY)``, taken on the
  connection that runs the migrations. Advisory locks need a direct connection to the server: through
  PgBouncer in transaction pooling mode they do not hold (GitLab's deploy node connects to the primary
  directly for the same reason).
* **SQLite**: an exclusive ``flock`` on a lock file next to the database (``<database>.migrate.lock``,
  created on first use and never removed, since removing a lock file races with its next user), and
  every migration runs in a ``BEGIN IMMEDIATE`` transaction that checks ``schema_migrations`` again.

A migration marked ``disable_ddl_transaction`` runs statement by statement outside a transaction
(:meth:`DatabaseSession.run_statement`); on PostgreSQL a failed ``CREATE INDEX CONCURRENTLY`` leaves an
INVALID index behind, which the session drops at once (``DROP INDEX CONCURRENTLY``, which blocks no
query of the users) or, when that cannot finish in time, names in the error with the command that drops
it. An INVALID index left by an earlier run under the name a ``CREATE INDEX CONCURRENTLY`` creates is
dropped before the statement runs: ``IF NOT EXISTS`` would otherwise keep it.

A password in a database URL is a secret: every message that could carry it goes through a
:class:`Redactor` first, and the URL is shown only as :func:`display_url` renders it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from zdu.plugins import REDACTED, BackgroundMigration, ConfigError, MigrationError, Secret
from zdu_migrations.files import MigrationFile

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ADVISORY_LOCK_KEY",
    "Database",
    "DatabaseSession",
    "LockTimeout",
    "PostgresDatabase",
    "Redactor",
    "SqliteDatabase",
    "display_url",
    "open_database",
    "split_sqlite_statements",
]

#: The key of the PostgreSQL advisory lock every ``sql`` runner takes (``zdu`` in ASCII, then 1).
ADVISORY_LOCK_KEY = 0x7A_64_75_01

#: Called with an event's kind, message and data (the runner journals it).
EventSink = Callable[[str, str, dict[str, Any]], None]

#: GitLab's status codes of ``batched_background_migrations.status``.
BACKGROUND_STATUSES = {0: "paused", 1: "active", 3: "finished", 4: "failed", 5: "finalizing", 6: "finalized"}
_FINISHED_CODES = (3, 6)

_BACKGROUND_QUERY = (
    "SELECT m.job_class_name, m.table_name, m.column_name, m.status, m.min_value, m.max_value, {done} "
    "FROM batched_background_migrations m WHERE m.status NOT IN (3, 6) ORDER BY m.id"
)
_DONE_FROM_JOBS = (
    "(SELECT COALESCE(SUM(j.max_value - j.min_value + 1), 0) FROM batched_background_migration_jobs j "
    "WHERE j.batched_background_migration_id = m.id AND j.status = 3)"
)

_CONCURRENT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'(?P<name>(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)\s+ON\b',
    re.IGNORECASE | re.MULTILINE,
)


class LockTimeout(MigrationError):
    """One attempt gave up waiting for a lock (PostgreSQL's ``lock_timeout``); it was rolled back.

    :ivar waited: seconds the attempt ran before it gave up.
    """

    def __init__(self, message: str, waited: float = 0.0) -> None:
        super().__init__(message)
        self.waited = waited


_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version varchar NOT NULL PRIMARY KEY, finished_at text)"
)


class DatabaseSession(Protocol):
    """A connection that holds the migration lock and has a ``schema_migrations`` table."""

    def applied(self) -> set[str]:
        """The versions ``schema_migrations`` records."""
        ...

    def apply(self, migration: MigrationFile, sql: str, *, lock_timeout: float | None = None) -> bool:
        """Run ``sql`` and record ``migration`` in one transaction; ``False`` if it was recorded already.

        :param lock_timeout: seconds each statement may wait for a lock (PostgreSQL); ``None``: as long
            as it takes.
        :raises LockTimeout: a statement waited longer than ``lock_timeout``; rolled back.
        :raises MigrationError: the migration failed; its transaction was rolled back.
        """
        ...

    def statements(self, sql: str) -> list[str]:
        """The statements of a migration, each complete, for running them one by one."""
        ...

    def run_statement(
        self, migration: MigrationFile, statement: str, *, lock_timeout: float | None, on_event: EventSink
    ) -> None:
        """Run one statement of a non-transactional migration on its own, outside a transaction.

        :raises LockTimeout: it waited longer than ``lock_timeout`` for a lock (what it left is cleaned).
        :raises MigrationError: it failed; the message says what it left behind and how to clean it.
        """
        ...

    def record(self, migration: MigrationFile) -> bool:
        """Record ``migration`` in ``schema_migrations``; ``False`` if it was recorded already."""
        ...


class Database(Protocol):
    """A database the ``sql`` runner migrates."""

    @property
    def display(self) -> str:
        """The database's URL without its password, for logs, events and errors."""
        ...

    @property
    def lock_description(self) -> str:
        """Which lock serialises runners, in words."""
        ...

    def applied(self) -> set[str]:
        """The versions ``schema_migrations`` records (none when it does not exist). Changes nothing."""
        ...

    def background_migrations(self) -> list[BackgroundMigration]:
        """The unfinished rows of ``batched_background_migrations`` (none without the table). Reads only."""
        ...

    def session(self) -> contextlib.AbstractContextManager[DatabaseSession]:
        """Connect, take the migration lock (waiting for another runner to finish), create the table."""
        ...


@attrs.frozen
class Redactor:
    """Replaces every secret in a text by ``***``."""

    secrets: tuple[str, ...] = ()

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text


def display_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) replaced by ``***``."""
    return Redactor(_url_secrets(url))(url)


def _url_secrets(url: str) -> tuple[str, ...]:
    parts = urllib.parse.urlsplit(url)
    userinfo, at, _host = parts.netloc.rpartition("@")
    found: list[str] = []
    if at:
        _user, colon, password = userinfo.partition(":")
        if colon and password:
            found.append(password)
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key == "password" and value:
            found.append(value)
    found.extend([urllib.parse.unquote(s) for s in found] + [urllib.parse.quote(s) for s in found])
    return tuple(sorted({s for s in found if s}))


def open_database(url: Secret, *, lock_timeout: float, invalid_index_drop_timeout: float = 300.0) -> Database:
    """The database ``url`` names: ``sqlite:///ABSOLUTE/PATH`` or ``postgresql://USER:PASSWORD@HOST:PORT/DB``.

    :raises ConfigError: the URL is neither (the error shows it without its password).
    """
    text = url.reveal()
    display = display_url(text)
    scheme = text.partition(":")[0].lower()
    if scheme == "sqlite":
        path = text.partition(":")[2]
        if not path.startswith("///"):
            raise ConfigError(
                f"migrations.database: {display!r} is not sqlite:///ABSOLUTE/PATH (three slashes, then "
                "the absolute path of the database file)"
            )
        file = Path("/" + urllib.parse.unquote(path).lstrip("/"))
        return SqliteDatabase(file=file, lock_timeout=lock_timeout)
    if scheme in ("postgresql", "postgres"):
        return PostgresDatabase(
            url=url,
            display=display,
            redact=Redactor(_url_secrets(text)),
            lock_timeout=lock_timeout,
            invalid_index_drop_timeout=invalid_index_drop_timeout,
        )
    raise ConfigError(
        f"migrations.database: {display!r} is not a database URL: use sqlite:///ABSOLUTE/PATH or "
        "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _background_rows(rows: list[tuple[Any, ...]], with_jobs: bool) -> list[BackgroundMigration]:
    """Rows of :data:`_BACKGROUND_QUERY` as :class:`BackgroundMigration` values."""
    found = []
    for job_class, table, column, status, low, high, done in rows:
        progress = None
        if with_jobs and low is not None and high is not None and int(high) >= int(low):
            progress = min(1.0, int(done or 0) / (int(high) - int(low) + 1))
        found.append(
            BackgroundMigration(
                job_class_name=str(job_class),
                table_name=str(table),
                column_name=str(column),
                status=BACKGROUND_STATUSES.get(int(status), f"status {status}"),
                progress=progress,
            )
        )
    return found


# -- SQLite ----------------------------------------------------------------------------------------


def split_sqlite_statements(script: str) -> list[str]:
    """The statements of ``script``, each complete (a trigger's body stays whole).

    ``executescript`` would commit the migration's transaction before running the script, so the
    runner executes statements one by one inside its own transaction.
    """
    statements: list[str] = []
    buffer = ""
    pieces = script.split(";")
    for index, piece in enumerate(pieces):
        buffer += piece
        if index < len(pieces) - 1:
            buffer += ";"
            if sqlite3.complete_statement(buffer):
                statements.append(buffer.strip())
                buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "END", "ROLLBACK")


def _transaction_control(statement: str) -> str | None:
    """The keyword when ``statement`` begins, ends or aborts a transaction, else ``None``."""
    lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
    words = " ".join(lines).split()
    keyword = words[0].rstrip(";").upper() if words else ""
    return keyword if keyword in _TRANSACTION_CONTROL else None


@attrs.define
class SqliteDatabase:
    """A SQLite database file; migrations are serialised by a lock file next to it.

    The runner switches the database to WAL mode, so that application processes keep reading while a
    migration writes; every connection waits up to ``busy_timeout`` seconds for a lock.
    """

    file: Path
    lock_timeout: float
    busy_timeout: float = 30.0

    @property
    def display(self) -> str:
        """``sqlite:///PATH``."""
        return f"sqlite://{self.file}"

    @property
    def lock_file(self) -> Path:
        """The file whose ``flock`` serialises runners."""
        return self.file.with_name(self.file.name + ".migrate.lock")

    @property
    def lock_description(self) -> str:
        """The lock file."""
        return f"flock on {self.lock_file}"

    def applied(self) -> set[str]:
        """The versions recorded; read-only (a missing file or table means none)."""
        if not self.file.exists():
            return set()
        uri = f"file:{urllib.parse.quote(str(self.file))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)
        except sqlite3.Error as error:
            raise MigrationError(f"cannot open {self.display}: {error}") from None
        try:
            rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return set()
            raise MigrationError(f"cannot read schema_migrations in {self.display}: {error}") from None
        finally:
            connection.close()
        return {str(row[0]) for row in rows}

    def background_migrations(self) -> list[BackgroundMigration]:
        """The unfinished batched background migrations; read-only (a missing file or table: none)."""
        if not self.file.exists():
            return []
        uri = f"file:{urllib.parse.quote(str(self.file))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)
        except sqlite3.Error as error:
            raise MigrationError(f"cannot open {self.display}: {error}") from None
        try:
            tables = {
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'batched_background%'"
                )
            }
            if "batched_background_migrations" not in tables:
                return []
            with_jobs = "batched_background_migration_jobs" in tables
            rows = connection.execute(
                _BACKGROUND_QUERY.format(done=_DONE_FROM_JOBS if with_jobs else "0")
            ).fetchall()
        except sqlite3.Error as error:
            raise MigrationError(
                f"cannot read batched_background_migrations in {self.display}: {error}"
            ) from None
        finally:
            connection.close()
        return _background_rows(rows, with_jobs)

    @contextlib.contextmanager
    def session(self) -> Iterator[DatabaseSession]:
        """Take the lock file's ``flock``, connect, switch to WAL and create ``schema_migrations``."""
        if not self.file.parent.is_dir():
            raise MigrationError(f"cannot open {self.display}: directory {self.file.parent} does not exist")
        with self._locked():
            try:
                connection = sqlite3.connect(self.file, timeout=self.busy_timeout, isolation_level=None)
            except sqlite3.Error as error:
                raise MigrationError(f"cannot open {self.display}: {error}") from None
            try:
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute(_CREATE_TABLE)
                except sqlite3.Error as error:
                    raise MigrationError(f"cannot prepare {self.display}: {error}") from None
                yield _SqliteSession(connection, self.display)
            finally:
                connection.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise MigrationError(
                            f"another runner has held the migration lock of {self.display} "
                            f"({self.lock_file}) for more than {self.lock_timeout:g}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)


@attrs.define
class _SqliteSession:
    connection: sqlite3.Connection
    display: str

    def applied(self) -> set[str]:
        rows = self.connection.execute("SELECT version FROM schema_migrations").fetchall()
        return {str(row[0]) for row in rows}

    def statements(self, sql: str) -> list[str]:
        return split_sqlite_statements(sql)

    def run_statement(
        self, migration: MigrationFile, statement: str, *, lock_timeout: float | None, on_event: EventSink
    ) -> None:
        try:
            self.connection.execute(statement)
        except sqlite3.Error as error:
            raise MigrationError(
                f"migration {migration.path} failed on {self.display}: {_first_line(error)}; it runs "
                "outside a transaction (disable_ddl_transaction), so its statements before this one stay done"
            ) from None

    def record(self, migration: MigrationFile) -> bool:
        cursor = self.connection.execute(
            "INSERT OR IGNORE INTO schema_migrations (version, finished_at) VALUES (?, ?)",
            (migration.version, _now()),
        )
        return cursor.rowcount == 1

    def apply(self, migration: MigrationFile, sql: str, *, lock_timeout: float | None = None) -> bool:
        statements = split_sqlite_statements(sql)
        for statement in statements:
            keyword = _transaction_control(statement)
            if keyword is not None:
                raise MigrationError(
                    f"migration {migration.path}: {keyword} is not allowed, every migration already runs "
                    "in its own transaction; nothing was applied"
                )
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            recorded = connection.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if recorded:
                connection.execute("ROLLBACK")
                return False
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, finished_at) VALUES (?, ?)",
                (migration.version, _now()),
            )
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise MigrationError(
                f"migration {migration.path} failed on {self.display}: {_first_line(error)}; "
                "it was rolled back, the schema is as before it"
            ) from None
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return True


# -- PostgreSQL ------------------------------------------------------------------------------------


def _psycopg(display: str) -> Any:
    try:
        import psycopg  # noqa: PLC0415 - an optional dependency, loaded only for PostgreSQL URLs
    except ImportError:
        raise ConfigError(
            f"migrations.database: {display!r} needs psycopg: install zdu[postgresql]"
        ) from None
    return psycopg


@attrs.define
class PostgresDatabase:
    """A PostgreSQL database; migrations are serialised by a session-level advisory lock.

    :ivar url: the connection URL (a libpq URI), password included.
    :ivar display: the URL without its password.
    :ivar redact: removes the password from database messages.
    :ivar lock_timeout: seconds to wait for another runner's advisory lock.
    :ivar invalid_index_drop_timeout: seconds a ``DROP INDEX CONCURRENTLY`` of an INVALID index left by
        a failed statement may take (it waits for older transactions, blocking no query) before the
        index is left and the error gives the command instead.
    """

    url: Secret
    display: str
    redact: Redactor
    lock_timeout: float
    invalid_index_drop_timeout: float = 300.0
    connect_timeout: int = 10

    def __attrs_post_init__(self) -> None:
        _psycopg(self.display)

    @property
    def lock_description(self) -> str:
        """The advisory lock."""
        return f"pg_advisory_lock({ADVISORY_LOCK_KEY})"

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        pg = _psycopg(self.display)
        try:
            connection: psycopg.Connection[tuple[Any, ...]] = pg.connect(
                self.url.reveal(),
                autocommit=True,
                connect_timeout=self.connect_timeout,
                application_name="zdu-migrations",
            )
        except pg.Error as error:
            raise MigrationError(
                f"cannot connect to {self.display}: {self.redact(_first_line(error))}"
            ) from None
        return connection

    def applied(self) -> set[str]:
        """The versions recorded; read-only (a missing table means none)."""
        pg = _psycopg(self.display)
        with self._connect() as connection:
            try:
                row = connection.execute("SELECT to_regclass('schema_migrations')").fetchone()
                if row is None or row[0] is None:
                    return set()
                rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
            except pg.Error as error:
                raise MigrationError(
                    f"cannot read schema_migrations in {self.display}: {self.redact(_first_line(error))}"
                ) from None
        return {str(row[0]) for row in rows}

    def background_migrations(self) -> list[BackgroundMigration]:
        """The unfinished batched background migrations; read-only (a missing table means none)."""
        pg = _psycopg(self.display)
        with self._connect() as connection:
            try:
                row = connection.execute(
                    "SELECT to_regclass('batched_background_migrations'), "
                    "to_regclass('batched_background_migration_jobs')"
                ).fetchone()
                if row is None or row[0] is None:
                    return []
                with_jobs = row[1] is not None
                rows = connection.execute(
                    _BACKGROUND_QUERY.format(done=_DONE_FROM_JOBS if with_jobs else "0").encode()
                ).fetchall()
            except pg.Error as error:
                raise MigrationError(
                    f"cannot read batched_background_migrations in {self.display}: "
                    f"{self.redact(_first_line(error))}"
                ) from None
        return _background_rows(rows, with_jobs)

    @contextlib.contextmanager
    def session(self) -> Iterator[DatabaseSession]:
        """Connect, take the advisory lock (waiting up to ``lock_timeout``), create the table."""
        pg = _psycopg(self.display)
        with self._connect() as connection:
            try:
                connection.execute(
                    "SELECT set_config('lock_timeout', %s, false)", (f"{int(self.lock_timeout * 1000)}ms",)
                )
                try:
                    connection.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
                except pg.errors.LockNotAvailable:
                    raise MigrationError(
                        f"another runner has held the migration lock of {self.display} "
                        f"({self.lock_description}) for more than {self.lock_timeout:g}s"
                    ) from None
                connection.execute("RESET lock_timeout")
                connection.execute(_CREATE_TABLE)
            except pg.Error as error:
                raise MigrationError(
                    f"cannot prepare {self.display}: {self.redact(_first_line(error))}"
                ) from None
            try:
                yield _PostgresSession(connection, self.display, self.redact, self.invalid_index_drop_timeout)
            finally:
                with contextlib.suppress(pg.Error):
                    connection.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


@attrs.define
class _PostgresSession:
    connection: psycopg.Connection[tuple[Any, ...]]
    display: str
    redact: Redactor
    invalid_index_drop_timeout: float = 300.0

    def applied(self) -> set[str]:
        rows = self.connection.execute("SELECT version FROM schema_migrations").fetchall()
        return {str(row[0]) for row in rows}

    def apply(self, migration: MigrationFile, sql: str, *, lock_timeout: float | None = None) -> bool:
        import psycopg  # noqa: PLC0415 - present: PostgresDatabase checked it

        connection = self.connection
        begun = time.monotonic()
        try:
            with connection.transaction():
                if lock_timeout is not None:
                    connection.execute("SELECT set_config('lock_timeout', %s, true)", (_ms(lock_timeout),))
                recorded = connection.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if recorded:
                    return False
                # No parameters: the whole file goes in one simple query, several statements allowed.
                connection.execute(sql.encode())
                if connection.info.transaction_status is not psycopg.pq.TransactionStatus.INTRANS:
                    raise MigrationError(
                        f"migration {migration.path} ended its transaction itself (COMMIT or ROLLBACK): "
                        "every migration already runs in its own transaction; remove those statements"
                    )
                connection.execute(
                    "INSERT INTO schema_migrations (version, finished_at) VALUES (%s, %s)",
                    (migration.version, _now()),
                )
        except psycopg.errors.LockNotAvailable as error:
            raise LockTimeout(
                f"migration {migration.path} waited more than its lock_timeout of {lock_timeout:g}s for a "
                f"lock on {self.display}: {self.redact(_first_line(error))}; it was rolled back",
                waited=time.monotonic() - begun,
            ) from None
        except psycopg.Error as error:
            raise MigrationError(
                f"migration {migration.path} failed on {self.display}: {self.redact(_first_line(error))}; "
                "it was rolled back, the schema is as before it"
            ) from None
        return True

    def statements(self, sql: str) -> list[str]:
        import sqlparse  # noqa: PLC0415 - with psycopg, in the postgresql extra

        return [s.strip() for s in sqlparse.split(sql) if _has_code(s)]

    def record(self, migration: MigrationFile) -> bool:
        cursor = self.connection.execute(
            "INSERT INTO schema_migrations (version, finished_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (migration.version, _now()),
        )
        return cursor.rowcount == 1

    def run_statement(
        self, migration: MigrationFile, statement: str, *, lock_timeout: float | None, on_event: EventSink
    ) -> None:
        import psycopg  # noqa: PLC0415 - present: PostgresDatabase checked it

        connection = self.connection
        index = _CONCURRENT_INDEX.search(_without_comments(statement))
        if index is not None:
            self._drop_leftover(migration, index["name"], on_event)
        before = self._invalid_indexes()
        begun = time.monotonic()
        try:
            if lock_timeout is not None:
                connection.execute("SELECT set_config('lock_timeout', %s, false)", (_ms(lock_timeout),))
            try:
                connection.execute(statement.encode())
            finally:
                if lock_timeout is not None:
                    with contextlib.suppress(psycopg.Error):
                        connection.execute("RESET lock_timeout")
        except psycopg.Error as error:
            waited = time.monotonic() - begun
            left = self._clean_invalid(migration, before, on_event)
            message = self.redact(_first_line(error))
            if isinstance(error, psycopg.errors.LockNotAvailable):
                raise LockTimeout(
                    f"migration {migration.path}: a statement waited more than its lock_timeout of "
                    f"{lock_timeout:g}s for a lock on {self.display}: {message}{left}",
                    waited=waited,
                ) from None
            raise MigrationError(
                f"migration {migration.path} failed on {self.display}: {message}; it runs outside a "
                f"transaction (disable_ddl_transaction), so its statements before this one stay done{left}"
            ) from None

    def _invalid_indexes(self) -> dict[int, str]:
        """Every INVALID index in the database: its oid and its schema-qualified, quoted name."""
        rows = self.connection.execute(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT i.indisvalid"
        ).fetchall()
        return {int(oid): str(name) for oid, name in rows}

    def _drop_leftover(self, migration: MigrationFile, name: str, on_event: EventSink) -> None:
        """Drop an INVALID index called ``name`` left by an earlier run, before it is created again."""
        row = self.connection.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.indexrelid = to_regclass(%s) AND NOT i.indisvalid",
            (name,),
        ).fetchone()
        if row is None:
            return
        _dropped, left = self._drop([str(row[0])], migration, on_event, "an earlier run left it")
        if left:
            raise MigrationError(
                f"migration {migration.path}: an earlier run left the INVALID index {row[0]}, which could "
                f"not be dropped now (run {' '.join(left)})"
            )

    def _clean_invalid(self, migration: MigrationFile, before: dict[int, str], on_event: EventSink) -> str:
        """Drop the INVALID indexes a failed statement left; what to tell about them in the error."""
        try:
            new = [name for oid, name in self._invalid_indexes().items() if oid not in before]
        except Exception as error:  # the connection may be gone: say so rather than hide the first error
            return f"; could not look for INVALID indexes it may have left: {_first_line(error)}"
        if not new:
            return ""
        dropped, left = self._drop(new, migration, on_event, "the failed statement left it")
        text = ""
        if dropped:
            text += f"; the INVALID index it left was dropped: {', '.join(dropped)}"
        if left:
            text += f"; it left an INVALID index that could not be dropped now (run {' '.join(left)})"
        return text

    def _drop(
        self, names: list[str], migration: MigrationFile, on_event: EventSink, why: str
    ) -> tuple[list[str], list[str]]:
        """Drop INVALID indexes concurrently; the names dropped, and the commands of those left."""
        import psycopg  # noqa: PLC0415 - present: PostgresDatabase checked it

        dropped: list[str] = []
        left: list[str] = []
        for name in names:
            command = f"DROP INDEX CONCURRENTLY IF EXISTS {name};"
            try:
                self.connection.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (_ms(self.invalid_index_drop_timeout),),
                )
                self.connection.execute(command.encode())
                dropped.append(name)
                on_event(
                    "invalid-index-dropped",
                    f"dropped the INVALID index {name} ({why}) with {command}",
                    {"migration": migration.id, "index": name, "command": command},
                )
            except psycopg.Error as error:
                left.append(command)
                on_event(
                    "invalid-index-left",
                    f"could not drop the INVALID index {name} ({why}): {self.redact(_first_line(error))}; "
                    f"drop it with: {command}",
                    {"migration": migration.id, "index": name, "command": command},
                )
            finally:
                with contextlib.suppress(psycopg.Error):
                    self.connection.execute("RESET statement_timeout")
        return dropped, left


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _without_comments(statement: str) -> str:
    return "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))


def _has_code(statement: str) -> bool:
    return bool(_without_comments(statement).strip().rstrip(";").strip())
