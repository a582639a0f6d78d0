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
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

__all__ = ["DemoApp", "DemoServer", "asset_hash", "main"]

FAULTS = ("never-ready", "5xx", "crash-after:SECONDS")


def asset_hash(version: str) -> str:
    """Return the fingerprint in the asset names of ``version``: 16 hex digits of its SHA-256."""
    return hashlib.sha256(version.encode()).hexdigest()[:16]


class DemoApp:
    """The state of one demo application process: its version, its faults, whether it is ready."""

    def __init__(
        self,
        version: str,
        *,
        startup_delay: float = 0.0,
        request_delay: float = 0.0,
        fault: str | None = None,
    ) -> None:
        self.version = version
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

    def page(self) -> bytes:
        """Render the HTML of ``/``: it references this version's fingerprinted assets."""
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
            f"<title>GitLab demo {self.version}</title>\n"
            f'<meta name="gitlab-version" content="{self.version}">\n'
            f'<link rel="stylesheet" href="{self.css_path}">\n'
            f'<script src="{self.js_path}" defer></script>\n'
            f"</head><body><h1>GitLab demo</h1><p>version {self.version}</p></body></html>\n"
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
    parser.add_argument("--port", type=int, required=True, help="the TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument(
        "--startup-delay", type=float, default=0.0, help="seconds during which readiness answers 503"
    )
    parser.add_argument(
        "--request-delay-ms", type=float, default=0.0, help="milliseconds every page and asset takes"
    )
    parser.add_argument("--fault", type=_parse_fault, help=f"a fault to inject: {', '.join(FAULTS)}")
    parser.add_argument("--fault-version", help="inject the fault only when --version is this one")
    return parser


def _crash_after(app: DemoApp, seconds: float) -> None:
    delay = max(0.0, app.ready_at - time.monotonic()) + seconds
    if not app.stopping.wait(delay):
        print(f"demo app {app.version}: injected crash", file=sys.stderr, flush=True)
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo application until SIGTERM or SIGINT; return the exit code."""
    args = _build_parser().parse_args(argv)
    fault, crash_seconds = args.fault if args.fault else (None, 0.0)
    if args.fault_version is not None and args.fault_version != args.version:
        fault = None
    app = DemoApp(
        args.version,
        startup_delay=args.startup_delay,
        request_delay=args.request_delay_ms / 1000.0,
        fault=fault,
    )
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
