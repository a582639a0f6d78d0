"""A GitLab-like demo application: what the local platform runs when no real GitLab is at hand.

It behaves, in the ways that matter for an upgrade, like a GitLab Rails node: its page references
fingerprinted assets that only its own version serves (the mixed-version asset hazard), it has
readiness and liveness checks, and it shuts down gracefully on SIGTERM (readiness turns 503, no new
connection is accepted, requests in flight finish, exit code 0). Standard library only, so that it
starts fast and runs as several processes on a small machine::

    python -m zdu_local.demo_app --version 16.6.0 --port 8080

Endpoints: ``/`` (an HTML page), ``/assets/application-<hash>.js`` and ``.css`` (``hash`` is the first
16 hex digits of the SHA-256 of the version), ``/-/readiness``, ``/-/liveness``, ``/api/v4/version``.
Every response carries ``X-Demo-Version``.

``--export-assets DIR`` writes the version's fingerprinted assets into ``DIR`` (as ``/assets/`` serves
them) and exits: the local platform's assets store publishes a version with it (``assets-shim``).

Database (``--database FILE``, a SQLite file; without it the app has no database): every view of ``/``
reads the demo's one project, as its version's schema has it. The demo's migrations
(:data:`DEMO_MIGRATIONS`, for the ``sql`` runner) tell the story of a column rename split in two:
16.5's schema has ``projects(id, name, legacy_path)``; 16.6's regular migration adds ``path``, its
post-deployment migration drops ``legacy_path``. A version before 16.6 reads ``legacy_path``; 16.6 and
later read ``path`` (filling it in when empty) and never touch ``legacy_path``. When the query fails
the page answers 500: post-deployment migrations run while the old version serves break the old
version; a new version serving before the regular migrations ran breaks the new one. Connections
wait up to 5 s for a lock, and the file is switched to WAL mode, so that several instances share it.

Start-up delay (``--startup-delay``): the process listens at once, but until the delay has passed its
readiness check answers 503 and so do the application's pages and assets (liveness answers 200). A
platform polling readiness thus sees "running, not ready yet", never "connection refused".

Faults, for tests and demos (``--fault``), applied only when ``--fault-version`` is absent or equals
``--version``:

* ``never-ready``: readiness always answers 503 (pages are served normally);
* ``5xx``: every page and asset request answers 500;
* ``crash-after:SECONDS``: the process exits hard (``os._exit(1)``) that long after it became ready.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

__all__ = [
    "DEMO_BASE_SCHEMA",
    "DEMO_MIGRATIONS",
    "DemoApp",
    "DemoDatabase",
    "DemoServer",
    "asset_hash",
    "export_assets",
    "main",
]

FAULTS = ("never-ready", "5xx", "crash-after:SECONDS")


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


def _minor_version(version: str) -> tuple[int, int]:
    match = re.match(r"^(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (0, 0)


class DemoDatabase:
    """The demo's SQLite database, as one version of the app uses it.

    :ivar file: the database file; it must exist (the app never creates an empty one).
    :ivar version: the app's version: before 16.6 it reads ``legacy_path``, from 16.6 on ``path``.
    :ivar busy_timeout: seconds a connection waits for a lock held by another process.
    """

    def __init__(self, file: Path, version: str, busy_timeout: float = 5.0) -> None:
        self.file = file
        self.version = version
        self.busy_timeout = busy_timeout
        self.uses_path_column = _minor_version(version) >= PATH_COLUMN_SINCE

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

    def project(self) -> tuple[int, str, str] | None:
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
                path = re.sub(r"[^a-z0-9]+", "-", str(row[1]).lower()).strip("-")
                connection.execute(
                    "UPDATE projects SET path = ? WHERE id = ? AND path IS NULL", (path, row[0])
                )
            return int(row[0]), str(row[1]), str(path)
        finally:
            connection.close()


class DemoApp:
    """The state of one demo application process: its version, its faults, whether it is ready."""

    def __init__(
        self,
        version: str,
        *,
        startup_delay: float = 0.0,
        request_delay: float = 0.0,
        fault: str | None = None,
        database: Path | None = None,
    ) -> None:
        self.version = version
        self.database = None if database is None else DemoDatabase(database, version)
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

    @property
    def started(self) -> bool:
        """Whether the start-up delay has passed (pages are served only then)."""
        return time.monotonic() >= self.ready_at

    def page(self, project: tuple[int, str, str] | None = None) -> bytes:
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


class DemoHandler(BaseHTTPRequestHandler):
    """Answers one request (HTTP/1.0: one request per connection, so shutdown never waits on idle ones)."""

    server: DemoServer
    server_version = "zdu-demo"

    def do_GET(self) -> None:
        """Serve a GET request."""
        self._serve(head=False)

    def do_HEAD(self) -> None:
        """Serve a HEAD request."""
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/-/liveness":
            self._send(HTTPStatus.OK, b'{"status":"ok"}\n', "application/json", head)
            return
        if path == "/-/readiness":
            if app.ready:
                self._send(HTTPStatus.OK, b'{"status":"ok"}\n', "application/json", head)
            else:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b'{"status":"failed"}\n', "application/json", head)
            return
        if not app.started:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"starting\n", "text/plain", head)
            return
        if app.request_delay:
            time.sleep(app.request_delay)
        if path == "/api/v4/version":
            self._send(HTTPStatus.OK, app.version_document(), "application/json", head)
            return
        routes = {
            "/": (app.page, "text/html; charset=utf-8"),
            app.js_path: (app.javascript, "application/javascript"),
            app.css_path: (app.stylesheet, "text/css"),
        }
        if path not in routes:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)
            return
        if app.fault == "5xx":
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"injected fault\n", "text/plain", head)
            return
        if path == "/" and app.database is not None:
            try:
                project = app.database.project()
            except sqlite3.Error as error:
                message = f"database error: {error}\n".encode()
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, message, "text/plain", head)
                return
            self._send(HTTPStatus.OK, app.page(project), routes[path][1], head)
            return
        body, content_type = routes[path]
        self._send(HTTPStatus.OK, body(), content_type, head)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Demo-Version", self.server.app.version)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Do not log every request: the app runs at hundreds of requests per second."""


class DemoServer(ThreadingHTTPServer):
    """A threading HTTP server that lets requests in flight finish when it closes."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: DemoApp) -> None:
        self.app = app
        super().__init__(address, DemoHandler)


def _parse_fault(text: str) -> tuple[str, float]:
    if text in ("never-ready", "5xx"):
        return text, 0.0
    name, _, seconds = text.partition(":")
    if name == "crash-after":
        try:
            return name, float(seconds)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"unknown fault {text!r} (expected one of {', '.join(FAULTS)})")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zdu_local.demo_app", description=__doc__.split("\n")[0])
    parser.add_argument("--version", required=True, help="the GitLab version this instance plays")
    parser.add_argument("--port", type=int, help="the TCP port to listen on (required to serve)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument(
        "--startup-delay", type=float, default=0.0, help="seconds during which readiness answers 503"
    )
    parser.add_argument(
        "--request-delay-ms", type=float, default=0.0, help="milliseconds every page and asset takes"
    )
    parser.add_argument("--fault", type=_parse_fault, help=f"a fault to inject: {', '.join(FAULTS)}")
    parser.add_argument("--fault-version", help="inject the fault only when --version is this one")
    parser.add_argument(
        "--database",
        metavar="FILE",
        type=Path,
        help="the SQLite file whose projects table / reads (absent: no database)",
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
    this (``python -m zdu_local.demo_app --export-assets DIR --version VERSION``) to publish a version.
    """
    app = DemoApp(version)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for path, body in ((app.js_path, app.javascript()), (app.css_path, app.stylesheet())):
        name = path.removeprefix("/assets/")
        (directory / name).write_bytes(body)
        written.append(name)
    return written


def _crash_after(app: DemoApp, seconds: float) -> None:
    delay = max(0.0, app.ready_at - time.monotonic()) + seconds
    if not app.stopping.wait(delay):
        print(f"demo app {app.version}: injected crash", file=sys.stderr, flush=True)
        os._exit(1)


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
    fault, crash_seconds = args.fault if args.fault else (None, 0.0)
    if args.fault_version is not None and args.fault_version != args.version:
        fault = None
    app = DemoApp(
        args.version,
        startup_delay=args.startup_delay,
        request_delay=args.request_delay_ms / 1000.0,
        fault=fault,
        database=args.database,
    )
    if app.database is not None:
        try:
            app.database.use_wal()
        except sqlite3.Error as error:
            # Not fatal: the page answers 500 until the database can be read (as GitLab would).
            print(f"demo app {app.version}: database {args.database}: {error}", file=sys.stderr, flush=True)
    server = DemoServer((args.host, args.port), app)

    def stop(signum: int, _frame: FrameType | None) -> None:
        if app.stopping.is_set():
            return
        app.stopping.set()
        print(f"demo app {app.version}: {signal.Signals(signum).name}, shutting down", file=sys.stderr)
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, name="shutdown").start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if fault == "crash-after":
        threading.Thread(target=_crash_after, args=(app, crash_seconds), daemon=True).start()
    print(
        f"demo app {app.version} listening on {args.host}:{args.port} (pid {os.getpid()})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        # Closes the listening socket, then joins the threads of requests still in flight.
        server.server_close()
    print(f"demo app {app.version}: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
