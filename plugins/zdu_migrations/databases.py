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

A password in a database URL is a secret: every message that could carry it goes through a
:class:`Redactor` first, and the URL is shown only as :func:`display_url` renders it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from zdu.errors import ConfigError
from zdu.migrations import MigrationError
from zdu.secret import REDACTED, Secret
from zdu_migrations.files import MigrationFile

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ADVISORY_LOCK_KEY",
    "Database",
    "DatabaseSession",
    "PostgresDatabase",
    "Redactor",
    "SqliteDatabase",
    "display_url",
    "open_database",
    "split_sqlite_statements",
]

#: The key of the PostgreSQL advisory lock every ``sql`` runner takes (``zdu`` in ASCII, then 1).
ADVISORY_LOCK_KEY = 0x7A_64_75_01

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version varchar NOT NULL PRIMARY KEY, finished_at text)"
)


class DatabaseSession(Protocol):
    """A connection that holds the migration lock and has a ``schema_migrations`` table."""

    def applied(self) -> set[str]:
        """The versions ``schema_migrations`` records."""
        ...

    def apply(self, migration: MigrationFile, sql: str) -> bool:
        """Run ``sql`` and record ``migration`` in one transaction; ``False`` if it was recorded already.

        :raises MigrationError: the migration failed; its transaction was rolled back.
        """
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


def open_database(url: Secret, *, lock_timeout: float) -> Database:
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
            url=url, display=display, redact=Redactor(_url_secrets(text)), lock_timeout=lock_timeout
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

    def apply(self, migration: MigrationFile, sql: str) -> bool:
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
    """

    url: Secret
    display: str
    redact: Redactor
    lock_timeout: float
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
                yield _PostgresSession(connection, self.display, self.redact)
            finally:
                with contextlib.suppress(pg.Error):
                    connection.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


@attrs.define
class _PostgresSession:
    connection: psycopg.Connection[tuple[Any, ...]]
    display: str
    redact: Redactor

    def applied(self) -> set[str]:
        rows = self.connection.execute("SELECT version FROM schema_migrations").fetchall()
        return {str(row[0]) for row in rows}

    def apply(self, migration: MigrationFile, sql: str) -> bool:
        import psycopg  # noqa: PLC0415 - present: PostgresDatabase checked it

        connection = self.connection
        try:
            with connection.transaction():
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
        except psycopg.Error as error:
            raise MigrationError(
                f"migration {migration.path} failed on {self.display}: {self.redact(_first_line(error))}; "
                "it was rolled back, the schema is as before it"
            ) from None
        return True
