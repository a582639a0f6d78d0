"""A GitLab-like demo application: what the local platform runs when no real GitLab is at hand.

It behaves, in the ways that matter for an upgrade, like GitLab's Puma behind GitLab's nginx: its
page references fingerprinted assets that only its own version serves (the mixed-version asset
hazard), it has readiness and liveness checks, it answers the kinds of requests that hurt during an
upgrade (writes read back, long downloads, websockets) and it shuts down as Puma does with GitLab's
shutdown blackout. It is built on :mod:`aiohttp.web` (HTTP/1.1 with keep-alive, websockets), starts
in a fraction of a second and runs as several processes on a small machine::

    python -m zdu_demo.demo_app --version 16.6.0 --port 8080

Like Puma, the application's work runs on a bounded pool of threads (``--threads``, default 5):
pages, assets, API reads and writes (with their ``--request-delay-ms`` sleep and their database
queries) each hold one thread, so a busy app queues its requests as Puma does. Streams and websockets
wait on the event loop and hold no thread.

Endpoints (every response carries ``X-Demo-Version``):

* ``GET /``: an HTML page referencing ``/assets/application-<hash>.js`` and ``.css`` (``hash`` is the
  first 16 hex digits of the SHA-256 of the version); the assets themselves;
* ``GET /-/readiness``, ``GET /-/liveness``: 200 or 503, JSON ``{"status": ...}``;
* ``GET /api/v4/version``: JSON ``{"version", "revision"}``;
* ``GET /api/v4/projects/1``: JSON ``{"id", "name", "path"}`` of the demo project (the API read), read
  from the database as the version's schema has it (see below); a fixed project without a database;
* ``POST /api/v4/writes`` with JSON ``{"key": "<1 to 200 characters>"}``: ``201`` and JSON
  ``{"key", "version"}`` once the write is durable (committed); ``409`` when the key exists; ``400``
  for a bad body. ``GET /api/v4/writes/<key>``: ``200`` ``{"key", "version"}`` or ``404``.
  ``POST /api/v4/writes/lookup`` with JSON ``{"keys": [...]}`` (at most 5000): ``200``
  ``{"found": [the keys that exist]}``, the batch read-back of a probe's writes;
* ``GET /-/stream?seconds=S&size=N`` (defaults 3 and 65536; ``S`` at most 600, ``N`` at most 1 GiB):
  ``200`` with ``Content-Length: N``, the body sent in equal chunks spread evenly over ``S`` seconds
  (a long download, as a git clone over HTTP is); a client that gets fewer than ``N`` bytes knows
  its stream was cut;
* ``GET /-/cable``: a websocket (as GitLab's Action Cable): on connect a text message
  ``{"type": "welcome", "version": v}``, then ``{"type": "ping", "message": <unix time>}`` every
  0.5 s; a text message sent to it comes back as ``{"type": "echo", "message": ...}``;
* ``GET /-/metrics``: GitLab-like request metrics in Prometheus' format (``http_requests_total``,
  ``http_request_duration_seconds``, ``gitlab_build_info``: see :mod:`zdu_demo.app_metrics`);
* ``GET /-/inflight``: JSON ``{"requests": R, "streams": S, "websockets": W}``: the HTTP requests
  being handled now (streams included; websockets, health checks and this endpoint excluded), the
  streams in progress and the open websockets. The local platform's drain polls it to wait for the
  requests in flight (not the websockets, which outlive any drain) before it sends SIGTERM.

Writes: with ``--database``, a write is a row of ``probe_writes(key TEXT PRIMARY KEY, version TEXT
NOT NULL, created_at REAL NOT NULL)``, created at start (``CREATE TABLE IF NOT EXISTS``) and shared by
every instance on the database. Without a database, writes are kept in the process's memory and are
lost when it stops: a deliberate way to show lost writes.

``--export-assets DIR`` writes the version's fingerprinted assets into ``DIR`` (as ``/assets/`` serves
them) and exits: the local platform's assets store publishes a version with it (``assets-shim``).

Database (``--database FILE`` for a SQLite file, or ``--database postgresql://...`` with the
``zdu[postgresql]`` extra; the password may come from ``PGPASSWORD`` instead of the URL; without it
the app has no database): every view of ``/`` and of ``/api/v4/projects/1`` reads the demo's one
project, as its version's schema has it. The demo's migrations (:data:`DEMO_MIGRATIONS`, for the
``sql`` runner) tell the story of a column rename split in two: 16.5's schema has ``projects(id, name,
legacy_path)``; 16.6's regular migration adds ``path``, its post-deployment migration drops
``legacy_path``. A version before 16.6 reads ``legacy_path``; 16.6 and later read ``path`` (filling it
in when empty) and never touch ``legacy_path``. When the query fails the request answers 500:
post-deployment migrations run while the old version serves break the old version; a new version
serving before the regular migrations ran breaks the new one. SQLite connections wait up to 5 s for a
lock, and the file is switched to WAL mode, so that several instances share it; the app never creates
a missing SQLite file. PostgreSQL connections (one per thread, as Rails' pool is sized to Puma's
threads) wait up to 5 s for a lock.

Start-up delay (``--startup-delay``): the process listens at once, but until the delay has passed its
readiness check answers 503 and so does everything but the liveness check and ``/-/inflight``. A
platform polling readiness thus sees "running, not ready yet", never "connection refused".

Shutdown, as Puma's with GitLab's blackout: on SIGTERM or SIGINT readiness answers 503 at once; for
``--blackout-seconds`` (default 0, GitLab's ``shutdown_blackout_seconds``) the app goes on accepting
and serving, so that a load balancer polling readiness takes it out before connections are refused;
then it closes its listening socket (new connections are refused), lets the requests and streams in
flight finish within ``--shutdown-timeout`` (default 10 s), closes every websocket with a close frame
(1001, going away), closes idle keep-alive connections and exits 0.

Faults, for tests and demos (``--fault``), applied only when ``--fault-version`` is absent or equals
``--version``:

* ``never-ready``: readiness always answers 503 (pages are served normally);
* ``5xx``: every page, asset, API read and write answers 500 (health checks, ``/api/v4/version``,
  ``/-/inflight``, streams and websockets are spared);
* ``5xx-share:SHARE``: the same requests answer 500, but only a share of them (0 < SHARE <= 1; exactly
  every 1/SHARE-th, counted per process): a bad release that still mostly works;
* ``slow:MS``: the same requests take MS milliseconds more (added to ``--request-delay-ms``): a release
  that answers, but slowly;
* ``crash-after:SECONDS``: the process exits hard (``os._exit(1)``) that long after it became ready.

``--request-delay-ms`` applies to the same requests as ``5xx``, and to ``/api/v4/version``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from zdu_demo.app_metrics import METRICS_PATH, RequestMetrics

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEMO_BASE_SCHEMA",
    "DEMO_MIGRATIONS",
    "DemoApp",
    "DemoDatabase",
    "DemoPostgresDatabase",
    "DemoServer",
    "MemoryWrites",
    "WriteStore",
    "asset_hash",
    "export_assets",
    "main",
]

FAULTS = ("never-ready", "5xx", "5xx-share:SHARE", "slow:MS", "crash-after:SECONDS")
#: The longest key a write may have, and the most keys one lookup may ask for.
MAX_KEY_LENGTH = 200
MAX_LOOKUP_KEYS = 5000
#: The longest stream ``/-/stream`` sends, in seconds, and its largest size, in bytes.
MAX_STREAM_SECONDS = 600.0
MAX_STREAM_SIZE = 1 << 30
#: Streams send a chunk about this often (seconds).
STREAM_CHUNK_INTERVAL = 0.1
#: A websocket gets a ping message this often (seconds).
CABLE_PING_INTERVAL = 0.5
#: Requests not counted by ``/-/inflight``: health checks, and the count itself.
UNCOUNTED_PATHS = frozenset({"/-/readiness", "/-/liveness", "/-/inflight", METRICS_PATH})
CABLE_PATH = "/-/cable"


def asset_hash(version: str) -> str:
    """Return the fingerprint in the asset names of ``version``: 16 hex digits of its SHA-256."""
    return hashlib.sha256(version.encode()).hexdigest()[:16]


#: The demo's migrations, in GitLab's layout (``db/migrate``, ``db/post_migrate``), for the ``sql`` runner.
DEMO_MIGRATIONS = Path(__file__).parent / "demo_db"
#: The version of the migration that creates 16.5's schema: ``SqlRunner.apply(Stage.PRE,
#: through=DEMO_BASE_SCHEMA)`` sets up a database as 16.5 left it.
DEMO_BASE_SCHEMA = "20231001000000"
#: The first version that reads ``projects.path`` instead of ``projects.legacy_path``.
PATH_COLUMN_SINCE = (16, 6)
#: The project ``/api/v4/projects/1`` answers when the app has no database.
STATIC_PROJECT = (1, "Demo Project", "demo-project")

Project = tuple[int, str, str]


def _minor_version(version: str) -> tuple[int, int]:
    match = re.match(r"^(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _path_from_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class WriteStore(Protocol):
    """Where the writes of ``/api/v4/writes`` go; every method is called on a pool thread."""

    #: The exceptions a failing query raises (the request then answers 500).
    errors: tuple[type[Exception], ...]

    def write(self, key: str) -> bool:
        """Record ``key`` durably with the app's version; False when it exists already."""

    def read(self, key: str) -> str | None:
        """The version that wrote ``key``, or None."""

    def lookup(self, keys: Sequence[str]) -> list[str]:
        """The ``keys`` that exist, in the order given."""


class MemoryWrites:
    """Writes kept in the process's memory: lost when the instance stops (lost writes on purpose)."""

    errors: tuple[type[Exception], ...] = ()

    def __init__(self, version: str) -> None:
        self.version = version
        self._rows: dict[str, str] = {}
        self._lock = threading.Lock()

    def write(self, key: str) -> bool:
        """Record ``key``; False when it exists already."""
        with self._lock:
            if key in self._rows:
                return False
            self._rows[key] = self.version
            return True

    def read(self, key: str) -> str | None:
        """The version that wrote ``key``, or None."""
        with self._lock:
            return self._rows.get(key)

    def lookup(self, keys: Sequence[str]) -> list[str]:
        """The ``keys`` that exist, in the order given."""
        with self._lock:
            return [key for key in keys if key in self._rows]


class DemoDatabase:
    """The demo's SQLite database, as one version of the app uses it.

    :ivar file: the database file; it must exist (the app never creates an empty one).
    :ivar version: the app's version: before 16.6 it reads ``legacy_path``, from 16.6 on ``path``.
    :ivar busy_timeout: seconds a connection waits for a lock held by another process.
    """

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, file: Path, version: str, busy_timeout: float = 5.0) -> None:
        self.file = file
        self.version = version
        self.busy_timeout = busy_timeout
        self.uses_path_column = _minor_version(version) >= PATH_COLUMN_SINCE
        self._writes_table = False

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(str(self.file))}?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None)

    def use_wal(self) -> None:
        """Switch the file to WAL mode (readers and a writer at once); raises sqlite3.Error."""
        connection = self._connect()
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()

    def prepare(self) -> None:
        """Switch to WAL mode and create ``probe_writes`` if it is missing; raises sqlite3.Error."""
        self.use_wal()
        self._ensure_writes_table()

    def _ensure_writes_table(self) -> None:
        if self._writes_table:
            return
        connection = self._connect()
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS probe_writes "
                "(key TEXT PRIMARY KEY, version TEXT NOT NULL, created_at REAL NOT NULL)"
            )
        finally:
            connection.close()
        self._writes_table = True

    def project(self) -> Project | None:
        """The first project (id, name, path) as this version reads it; raises sqlite3.Error.

        16.6 and later fill in an empty ``path`` from the name (the write a new version does).
        """
        connection = self._connect()
        try:
            if not self.uses_path_column:
                row = connection.execute("SELECT id, name, legacy_path FROM projects LIMIT 1").fetchone()
                return None if row is None else (int(row[0]), str(row[1]), str(row[2]))
            row = connection.execute("SELECT id, name, path FROM projects LIMIT 1").fetchone()
            if row is None:
                return None
            path = row[2]
            if path is None:
                path = _path_from_name(str(row[1]))
                connection.execute(
                    "UPDATE projects SET path = ? WHERE id = ? AND path IS NULL", (path, row[0])
                )
            return int(row[0]), str(row[1]), str(path)
        finally:
            connection.close()

    def write(self, key: str) -> bool:
        """Insert ``key`` (committed when this returns); False when it exists. Raises sqlite3.Error."""
        self._ensure_writes_table()
        connection = self._connect()
        try:
            cursor = connection.execute(
                "INSERT INTO probe_writes (key, version, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (key, self.version, time.time()),
            )
            return cursor.rowcount == 1
        finally:
            connection.close()

    def read(self, key: str) -> str | None:
        """The version that wrote ``key``, or None; raises sqlite3.Error."""
        self._ensure_writes_table()
        connection = self._connect()
        try:
            row = connection.execute("SELECT version FROM probe_writes WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])
        finally:
            connection.close()

    def lookup(self, keys: Sequence[str]) -> list[str]:
        """The ``keys`` that exist, in the order given; raises sqlite3.Error."""
        self._ensure_writes_table()
        connection = self._connect()
        try:
            # One parameter, a JSON array, whatever the number of keys (SQLite limits parameters).
            rows = connection.execute(
                "SELECT key FROM probe_writes WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(keys)),),
            ).fetchall()
        finally:
            connection.close()
        found = {str(row[0]) for row in rows}
        return [key for key in keys if key in found]


class DemoPostgresDatabase:
    """The demo's database on PostgreSQL (``zdu[postgresql]``), as one version of the app uses it.

    One autocommit connection per pool thread, made on first use and made again after it broke.

    :ivar url: the ``postgresql://`` URL (the password may be in it, or in ``PGPASSWORD``).
    :ivar version: the app's version: before 16.6 it reads ``legacy_path``, from 16.6 on ``path``.
    :ivar lock_timeout: seconds a query waits for a lock (a migration's, another instance's).
    """

    def __init__(self, url: str, version: str, lock_timeout: float = 5.0) -> None:
        try:
            import psycopg  # noqa: PLC0415 - an optional extra, imported only when it is used
        except ImportError as error:
            raise RuntimeError(
                "--database is a PostgreSQL URL but psycopg is not installed: pip install 'zdu[postgresql]'"
            ) from error
        self._psycopg = psycopg
        self.url = url
        self.version = version
        self.lock_timeout = lock_timeout
        self.uses_path_column = _minor_version(version) >= PATH_COLUMN_SINCE
        self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._writes_table = False

    def _connection(self) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] | None = getattr(self._local, "connection", None)
        if connection is not None and not (connection.closed or connection.broken):
            return connection
        connection = self._psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            options=f"-c lock_timeout={int(self.lock_timeout * 1000)}",
        )
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        """Close every connection the threads opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def prepare(self) -> None:
        """Create ``probe_writes`` if it is missing; raises psycopg.Error."""
        self._ensure_writes_table()

    def _ensure_writes_table(self) -> None:
        if self._writes_table:
            return
        # UniqueViolation: another instance created it at the same moment.
        with contextlib.suppress(self._psycopg.errors.UniqueViolation):
            self._connection().execute(
                "CREATE TABLE IF NOT EXISTS probe_writes "
                "(key TEXT PRIMARY KEY, version TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)"
            )
        self._writes_table = True

    def project(self) -> Project | None:
        """The first project (id, name, path) as this version reads it; raises psycopg.Error."""
        connection = self._connection()
        if not self.uses_path_column:
            row = connection.execute(
                "SELECT id, name, legacy_path FROM projects ORDER BY id LIMIT 1"
            ).fetchone()
            return None if row is None else (int(row[0]), str(row[1]), str(row[2]))
        row = connection.execute("SELECT id, name, path FROM projects ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        path = row[2]
        if path is None:
            path = _path_from_name(str(row[1]))
            connection.execute("UPDATE projects SET path = %s WHERE id = %s AND path IS NULL", (path, row[0]))
        return int(row[0]), str(row[1]), str(path)

    def write(self, key: str) -> bool:
        """Insert ``key`` (committed when this returns); False when it exists. Raises psycopg.Error."""
        self._ensure_writes_table()
        cursor = self._connection().execute(
            "INSERT INTO probe_writes (key, version, created_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO NOTHING",
            (key, self.version, time.time()),
        )
        return cursor.rowcount == 1

    def read(self, key: str) -> str | None:
        """The version that wrote ``key``, or None; raises psycopg.Error."""
        self._ensure_writes_table()
        row = self._connection().execute("SELECT version FROM probe_writes WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def lookup(self, keys: Sequence[str]) -> list[str]:
        """The ``keys`` that exist, in the order given; raises psycopg.Error."""
        self._ensure_writes_table()
        rows = (
            self._connection()
            .execute("SELECT key FROM probe_writes WHERE key = ANY(%s)", (list(keys),))
            .fetchall()
        )
        found = {str(row[0]) for row in rows}
        return [key for key in keys if key in found]


def _is_postgresql_url(database: str) -> bool:
    """Whether ``--database`` names a PostgreSQL database rather than a SQLite file."""
    return database.startswith(("postgresql://", "postgres://"))


def _redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


class DemoApp:
    """The state of one demo application process: its version, its faults, whether it is ready.

    ``database`` is a SQLite file (a :class:`~pathlib.Path`, or a string that is not a PostgreSQL
    URL), a ``postgresql://`` URL, or None (no database: writes are kept in memory).
    """

    def __init__(
        self,
        version: str,
        *,
        startup_delay: float = 0.0,
        request_delay: float = 0.0,
        fault: str | None = None,
        database: Path | str | None = None,
        error_share: float = 1.0,
    ) -> None:
        self.version = version
        self.error_share = error_share
        self._answered = itertools.count(1)
        self.database: DemoDatabase | DemoPostgresDatabase | None
        if database is None:
            self.database = None
        elif isinstance(database, str) and _is_postgresql_url(database):
            self.database = DemoPostgresDatabase(database, version)
        else:
            self.database = DemoDatabase(Path(database), version)
        self.writes: WriteStore = MemoryWrites(version) if self.database is None else self.database
        self.request_delay = request_delay
        self.fault = fault
        self.ready_at = time.monotonic() + startup_delay
        self.stopping = threading.Event()
        fingerprint = asset_hash(version)
        self.js_path = f"/assets/application-{fingerprint}.js"
        self.css_path = f"/assets/application-{fingerprint}.css"
        self.revision = fingerprint[:11]

    @property
    def ready(self) -> bool:
        """Whether the readiness check answers 200 now."""
        return (
            not self.stopping.is_set() and self.fault != "never-ready" and time.monotonic() >= self.ready_at
        )

    def injects_error(self) -> bool:
        """Whether this request answers the injected 500 (``5xx``: all; ``5xx-share``: its share)."""
        if self.fault == "5xx":
            return True
        if self.fault != "5xx-share":
            return False
        n = next(self._answered)
        return math.floor(n * self.error_share) > math.floor((n - 1) * self.error_share)

    @property
    def started(self) -> bool:
        """Whether the start-up delay has passed (pages are served only then)."""
        return time.monotonic() >= self.ready_at

    def project(self) -> Project | None:
        """The demo project as this version reads it (a fixed one without a database).

        Raises one of ``self.writes.errors`` when the query fails.
        """
        return STATIC_PROJECT if self.database is None else self.database.project()

    def page(self, project: Project | None = None) -> bytes:
        """Render the HTML of ``/``: it references this version's fingerprinted assets (and the project)."""
        shown = "" if project is None else f"<p>project {project[1]} at {project[2]}</p>"
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
            f"<title>GitLab demo {self.version}</title>\n"
            f'<meta name="gitlab-version" content="{self.version}">\n'
            f'<link rel="stylesheet" href="{self.css_path}">\n'
            f'<script src="{self.js_path}" defer></script>\n'
            f"</head><body><h1>GitLab demo</h1><p>version {self.version}</p>{shown}</body></html>\n"
        ).encode()

    def javascript(self) -> bytes:
        """Return the body of this version's JavaScript asset."""
        return f'/* GitLab demo {self.version} */\nconsole.log("gitlab demo {self.version}");\n'.encode()

    def stylesheet(self) -> bytes:
        """Return the body of this version's stylesheet asset."""
        return f"/* GitLab demo {self.version} */\nbody {{ font-family: sans-serif; }}\n".encode()

    def version_document(self) -> bytes:
        """Return the body of ``/api/v4/version``."""
        return json.dumps({"version": self.version, "revision": self.revision}).encode()


def _json(status: int, document: object) -> web.Response:
    return web.Response(status=status, text=json.dumps(document) + "\n", content_type="application/json")


def _bad_request(message: str) -> web.Response:
    return _json(400, {"error": message})


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key_error(field: str, key: object) -> str | None:
    if isinstance(key, str) and 1 <= len(key) <= MAX_KEY_LENGTH:
        return None
    return f"{field}: expected a string of 1 to {MAX_KEY_LENGTH} characters, got {_shown(key)}"


def _stream_parameter(request: web.Request, name: str, default: float, limit: float) -> float | str:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= limit:  # NaN fails too
        return f"{name}: expected a number from 0 to {limit:g}, got {text!r}"
    return value


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The application's work for one request, run on a pool thread: (body, match info) -> response.
Work = Callable[[bytes, dict[str, str]], web.Response]


class DemoServer:
    """The demo app's HTTP server: an :mod:`aiohttp.web` application, a Puma-like thread pool, a shutdown.

    :param app: the application's state.
    :param host: the address to listen on.
    :param port: the TCP port to listen on.
    :param threads: the size of the pool running the application's work (Puma's threads).
    :param blackout_seconds: after SIGTERM, how long it keeps serving with readiness at 503.
    :param shutdown_timeout: how long requests and streams in flight get to finish once it stops.
    """

    def __init__(
        self,
        app: DemoApp,
        host: str,
        port: int,
        *,
        threads: int = 5,
        blackout_seconds: float = 0.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.threads = threads
        self.blackout_seconds = blackout_seconds
        self.shutdown_timeout = shutdown_timeout
        self.requests = 0
        self.streams = 0
        self.websockets: set[web.WebSocketResponse] = set()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="demo-app-thread")
        self._stop: asyncio.Event | None = None
        self.web_app = self._build()

    def _build(self) -> web.Application:
        web_app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        app = self.app
        web_app.router.add_get("/-/liveness", self._liveness)
        web_app.router.add_get("/-/readiness", self._readiness)
        web_app.router.add_get("/-/inflight", self._inflight)
        web_app.router.add_get("/api/v4/version", self._rails(self._version, faults=False))
        web_app.router.add_get("/", self._rails(self._page))
        web_app.router.add_get(
            app.js_path, self._rails(self._asset(app.javascript(), "application/javascript"))
        )
        web_app.router.add_get(app.css_path, self._rails(self._asset(app.stylesheet(), "text/css")))
        web_app.router.add_get("/api/v4/projects/1", self._rails(self._project))
        web_app.router.add_post("/api/v4/writes", self._rails(self._write))
        web_app.router.add_post("/api/v4/writes/lookup", self._rails(self._lookup))
        web_app.router.add_get("/api/v4/writes/{key:.+}", self._rails(self._read))
        web_app.router.add_get("/-/stream", self._stream, allow_head=False)
        web_app.router.add_get(CABLE_PATH, self._cable, allow_head=False)
        web_app.on_response_prepare.append(self._stamp)
        web_app.on_shutdown.append(self._close_websockets)
        RequestMetrics(app.version).install(web_app)  # GitLab-like request metrics at /-/metrics
        return web_app

    # -- plumbing -----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer 503 while starting; count the requests in flight for ``/-/inflight``."""
        if request.path in UNCOUNTED_PATHS:
            return await handler(request)
        if not self.app.started:
            return web.Response(status=503, text="starting\n")
        if request.path == CABLE_PATH:
            return await handler(request)
        self.requests += 1
        try:
            return await handler(request)
        finally:
            self.requests -= 1

    async def _stamp(self, _request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Demo-Version"] = self.app.version
        response.headers["Server"] = "zdu-demo"

    def _rails(self, work: Work, *, faults: bool = True) -> Handler:
        """A handler running ``work`` on the thread pool after the request delay, as Puma would.

        ``work`` gets the request's body (read on the event loop first) and its match info.
        """

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read() if request.can_read_body else b""
            match = dict(request.match_info)

            def run() -> web.Response:
                if self.app.request_delay:
                    time.sleep(self.app.request_delay)
                if faults and self.app.injects_error():
                    return web.Response(status=500, text="injected fault\n")
                return work(body, match)

            return await asyncio.get_running_loop().run_in_executor(self._executor, run)

        return handle

    def _database_error(self, error: Exception) -> web.Response:
        message = str(error)
        if isinstance(self.app.database, DemoPostgresDatabase):
            password = urllib.parse.urlsplit(self.app.database.url).password
            if password:
                message = message.replace(password, "***")
        return web.Response(status=500, text=f"database error: {message}\n")

    # -- health -------------------------------------------------------------------------------------

    async def _liveness(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readiness(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"}) if self.app.ready else _json(503, {"status": "failed"})

    async def _inflight(self, _request: web.Request) -> web.Response:
        return _json(
            200, {"requests": self.requests, "streams": self.streams, "websockets": len(self.websockets)}
        )

    # -- the application's work, on the pool --------------------------------------------------------

    def _version(self, _body: bytes, _match: dict[str, str]) -> web.Response:
        return web.Response(body=self.app.version_document(), content_type="application/json")

    def _asset(self, content: bytes, content_type: str) -> Work:
        def serve(_body: bytes, _match: dict[str, str]) -> web.Response:
            return web.Response(body=content, content_type=content_type)

        return serve

    def _page(self, _body: bytes, _match: dict[str, str]) -> web.Response:
        project = None
        if self.app.database is not None:
            try:
                project = self.app.database.project()
            except self.app.writes.errors as error:
                return self._database_error(error)
        return web.Response(body=self.app.page(project), content_type="text/html", charset="utf-8")

    def _project(self, _body: bytes, _match: dict[str, str]) -> web.Response:
        try:
            project = self.app.project()
        except self.app.writes.errors as error:
            return self._database_error(error)
        if project is None:
            return _json(404, {"message": "404 Project Not Found"})
        return _json(200, {"id": project[0], "name": project[1], "path": project[2]})

    def _write(self, body: bytes, _match: dict[str, str]) -> web.Response:
        document = _parse(body)
        if isinstance(document, web.Response):
            return document
        key = document.get("key")
        error = _key_error("key", key)
        if error is not None:
            return _bad_request(error)
        assert isinstance(key, str)
        try:
            created = self.app.writes.write(key)
        except self.app.writes.errors as failure:
            return self._database_error(failure)
        if not created:
            return _json(409, {"error": f"key: {key!r} exists already", "key": key})
        return _json(201, {"key": key, "version": self.app.version})

    def _read(self, _body: bytes, match: dict[str, str]) -> web.Response:
        key = match["key"]
        error = _key_error("key", key)
        if error is not None:
            return _bad_request(error)
        try:
            version = self.app.writes.read(key)
        except self.app.writes.errors as failure:
            return self._database_error(failure)
        if version is None:
            return _json(404, {"error": f"key: {key!r} not found", "key": key})
        return _json(200, {"key": key, "version": version})

    def _lookup(self, body: bytes, _match: dict[str, str]) -> web.Response:
        document = _parse(body)
        if isinstance(document, web.Response):
            return document
        keys = document.get("keys")
        if not isinstance(keys, list) or len(keys) > MAX_LOOKUP_KEYS:
            return _bad_request(
                f"keys: expected a list of at most {MAX_LOOKUP_KEYS} keys, got {_shown(keys)}"
            )
        for index, key in enumerate(keys):
            error = _key_error(f"keys[{index}]", key)
            if error is not None:
                return _bad_request(error)
        try:
            found = self.app.writes.lookup(keys)
        except self.app.writes.errors as failure:
            return self._database_error(failure)
        return _json(200, {"found": found})

    # -- streams and websockets, on the event loop --------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        seconds = _stream_parameter(request, "seconds", 3.0, MAX_STREAM_SECONDS)
        size = _stream_parameter(request, "size", 65536, MAX_STREAM_SIZE)
        for value in (seconds, size):
            if isinstance(value, str):
                return _bad_request(value)
        assert isinstance(seconds, float) and isinstance(size, (int, float))
        if size != int(size):
            return _bad_request(f"size: expected a whole number of bytes, got {request.query['size']!r}")
        total = int(size)
        chunks = max(1, min(total, math.ceil(seconds / STREAM_CHUNK_INTERVAL)))
        response = web.StreamResponse(status=200)
        response.content_type = "application/octet-stream"
        response.content_length = total
        self.streams += 1
        try:
            await response.prepare(request)
            loop = asyncio.get_running_loop()
            start = loop.time()
            base, extra = divmod(total, chunks)
            for index in range(chunks if total else 0):
                await asyncio.sleep(max(0.0, start + (index + 1) * seconds / chunks - loop.time()))
                await response.write(b"x" * (base + (1 if index < extra else 0)))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away: its count of bytes tells it the stream was cut
        finally:
            self.streams -= 1
        return response

    async def _cable(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(timeout=2.0)
        await socket.prepare(request)
        self.websockets.add(socket)
        pinger = asyncio.create_task(self._ping(socket))
        try:
            await socket.send_json({"type": "welcome", "version": self.app.version})
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    await socket.send_json({"type": "echo", "message": message.data})
        except ConnectionError:
            pass
        finally:
            pinger.cancel()
            self.websockets.discard(socket)
        return socket

    async def _ping(self, socket: web.WebSocketResponse) -> None:
        try:
            while True:
                await asyncio.sleep(CABLE_PING_INTERVAL)
                if socket.closed:
                    return
                await socket.send_json({"type": "ping", "message": int(time.time())})
        except (ConnectionError, RuntimeError):
            pass  # closed under us

    async def _close_websockets(self, _web_app: web.Application) -> None:
        sockets = list(self.websockets)
        await asyncio.gather(
            *(
                socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for socket in sockets
            ),
            return_exceptions=True,
        )

    # -- life cycle ---------------------------------------------------------------------------------

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Begin the shutdown (a signal handler): readiness answers 503 at once, the blackout starts."""
        if self.app.stopping.is_set():
            return
        self.app.stopping.set()
        print(
            f"demo app {self.app.version}: {signal.Signals(signum).name}, shutting down",
            file=sys.stderr,
            flush=True,
        )
        if self._stop is not None:
            self._stop.set()

    async def serve(self, crash_after: float | None = None) -> None:
        """Listen, serve until :meth:`stop` (SIGTERM, SIGINT), then shut down as Puma does."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(
            self.web_app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_timeout
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=128, reuse_address=True)
            await site.start()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop, signum)
            crash = (
                None if crash_after is None else loop.call_later(self._crash_delay(crash_after), self._crash)
            )
            print(
                f"demo app {self.app.version} listening on {self.host}:{self.port} (pid {os.getpid()})",
                file=sys.stderr,
                flush=True,
            )
            await self._stop.wait()
            if crash is not None:
                crash.cancel()
            if self.blackout_seconds:
                await asyncio.sleep(self.blackout_seconds)
        finally:
            # Closes the listening socket and idle connections, closes the websockets (1001), waits up
            # to shutdown_timeout for the requests in flight, then closes their connections.
            await runner.cleanup()
            self._executor.shutdown(wait=False, cancel_futures=True)
            if isinstance(self.app.database, DemoPostgresDatabase):
                self.app.database.close()

    def _crash_delay(self, seconds: float) -> float:
        return max(0.0, self.app.ready_at - time.monotonic()) + seconds

    def _crash(self) -> None:
        print(f"demo app {self.app.version}: injected crash", file=sys.stderr, flush=True)
        os._exit(1)


def _parse(body: bytes) -> dict[str, Any] | web.Response:
    """The JSON object in a request's body, or the 400 answer saying what is wrong with it."""
    try:
        document = json.loads(body)
    except ValueError as error:
        return _bad_request(f"body: not JSON ({error})")
    if not isinstance(document, dict):
        return _bad_request(f"body: expected a JSON object, got {_shown(document)}")
    return document


def _parse_fault(text: str) -> tuple[str, float]:
    if text in ("never-ready", "5xx"):
        return text, 0.0
    name, _, seconds = text.partition(":")
    if name == "5xx-share":
        try:
            share = float(seconds)
        except ValueError:
            share = math.nan
        if 0 < share <= 1:
            return name, share
        raise argparse.ArgumentTypeError(
            f"fault {text!r}: the share must be a number in (0, 1], got {seconds!r}"
        )
    if name == "slow":
        try:
            delay = float(seconds)
        except ValueError:
            delay = math.nan
        if delay > 0:
            return name, delay
        raise argparse.ArgumentTypeError(
            f"fault {text!r}: the delay must be milliseconds > 0, got {seconds!r}"
        )
    if name == "crash-after":
        try:
            return name, float(seconds)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"unknown fault {text!r} (expected one of {', '.join(FAULTS)})")


def _number(
    minimum: float, *, inclusive: bool = True, kind: type[float] | type[int] = float
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (value >= minimum if inclusive else value > minimum):  # NaN fails too
            relation = "at least" if inclusive else "more than"
            raise argparse.ArgumentTypeError(f"expected a number {relation} {minimum:g}, got {text!r}")
        return value

    return parse


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zdu_demo.demo_app", description=__doc__.split("\n")[0])
    parser.add_argument("--version", required=True, help="the GitLab version this instance plays")
    parser.add_argument("--port", type=int, help="the TCP port to listen on (required to serve)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument(
        "--startup-delay", type=_number(0), default=0.0, help="seconds during which readiness answers 503"
    )
    parser.add_argument(
        "--request-delay-ms",
        type=_number(0),
        default=0.0,
        help="milliseconds every page, asset, API read and write takes (holding a thread)",
    )
    parser.add_argument("--fault", type=_parse_fault, help=f"a fault to inject: {', '.join(FAULTS)}")
    parser.add_argument("--fault-version", help="inject the fault only when --version is this one")
    parser.add_argument(
        "--database",
        metavar="FILE|URL",
        help="the SQLite file or postgresql:// URL whose projects the app reads and where writes go "
        "(absent: no database, writes kept in memory)",
    )
    parser.add_argument(
        "--threads", type=_number(1, kind=int), default=5, help="threads running the app's work (Puma's)"
    )
    parser.add_argument(
        "--blackout-seconds",
        type=_number(0),
        default=0.0,
        help="after SIGTERM, seconds it keeps serving with readiness at 503 (shutdown_blackout_seconds)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_number(0, inclusive=False),
        default=10.0,
        help="seconds the requests and streams in flight get to finish once it stops accepting",
    )
    parser.add_argument(
        "--export-assets",
        metavar="DIR",
        help="write this version's fingerprinted assets (the files under /assets/) into DIR and exit",
    )
    return parser


def export_assets(version: str, directory: Path) -> list[str]:
    """Write the fingerprinted assets of ``version`` into ``directory``, as ``/assets/`` serves them.

    Returns the names written (relative to ``directory``). The assets store of the local platform runs
    this (``python -m zdu_demo.demo_app --export-assets DIR --version VERSION``) to publish a version.
    """
    app = DemoApp(version)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for path, body in ((app.js_path, app.javascript()), (app.css_path, app.stylesheet())):
        name = path.removeprefix("/assets/")
        (directory / name).write_bytes(body)
        written.append(name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo application until SIGTERM or SIGINT; return the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.export_assets is not None:
        for name in export_assets(args.version, Path(args.export_assets)):
            print(name)
        return 0
    if args.port is None:
        parser.error("--port is required (unless --export-assets is given)")
    fault, parameter = args.fault if args.fault else (None, 0.0)
    if args.fault_version is not None and args.fault_version != args.version:
        fault = None
    try:
        app = DemoApp(
            args.version,
            startup_delay=args.startup_delay,
            request_delay=(args.request_delay_ms + (parameter if fault == "slow" else 0.0)) / 1000.0,
            fault=fault,
            database=args.database,
            error_share=parameter if fault == "5xx-share" else 1.0,
        )
    except RuntimeError as error:
        parser.error(f"--database {_redact_url(args.database)}: {error}")
    if app.database is not None:
        shown = _redact_url(args.database)
        try:
            app.database.prepare()
        except app.writes.errors as error:
            # Not fatal: the requests that need it answer 500 until it can be used (as GitLab would).
            print(f"demo app {app.version}: database {shown}: {error}", file=sys.stderr, flush=True)
    server = DemoServer(
        app,
        args.host,
        args.port,
        threads=args.threads,
        blackout_seconds=args.blackout_seconds,
        shutdown_timeout=args.shutdown_timeout,
    )
    try:
        asyncio.run(server.serve(parameter if fault == "crash-after" else None))
    except OSError as error:
        print(f"demo app {app.version}: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    print(f"demo app {app.version}: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
