"""The demo app, run as the platform runs it: a process on a free loopback port."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.migrations import conftest as migration_fixtures
from zdu.network import free_port
from zdu_demo.demo_app import asset_hash

from .conftest import get

#: A PostgreSQL server for the session, as the migration runners' tests start it.
postgres_server = migration_fixtures.postgres_server

Get = Callable[..., tuple[int, dict[str, str], bytes]]


class Demo:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def start_demo(tmp_path: Path, http_get: Get) -> Iterator[Callable[..., Demo]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str, version: str = "16.6.0") -> Demo:
        port = free_port("127.0.0.1")
        log = (tmp_path / f"demo-{port}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zdu_demo.demo_app",
                "--version",
                version,
                "--port",
                str(port),
                *arguments,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        demo = Demo(process, port)
        deadline = time.monotonic() + 10
        while True:
            try:
                http_get(demo.url + "/-/liveness", timeout=1)
                return demo
            except OSError:
                assert process.poll() is None, (
                    f"demo app exited: {(tmp_path / f'demo-{port}.log').read_text()}"
                )
                assert time.monotonic() < deadline, "demo app did not listen within 10s"
                time.sleep(0.02)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_serves_page_assets_readiness_and_version(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo(version="16.6.0")
    fingerprint = asset_hash("16.6.0")
    assert fingerprint != asset_hash("16.5.0") and len(fingerprint) == 16

    status, headers, body = http_get(demo.url + "/")
    assert status == 200 and headers["X-Demo-Version"] == "16.6.0"
    assert f"/assets/application-{fingerprint}.js".encode() in body
    assert f"/assets/application-{fingerprint}.css".encode() in body
    for suffix, content_type in (("js", "application/javascript"), ("css", "text/css")):
        status, headers, body = http_get(f"{demo.url}/assets/application-{fingerprint}.{suffix}")
        assert (status, headers["Content-Type"], headers["X-Demo-Version"]) == (200, content_type, "16.6.0")
        assert b"16.6.0" in body
    assert http_get(demo.url + "/-/readiness")[0] == 200
    assert http_get(demo.url + "/-/liveness")[0] == 200
    status, headers, body = http_get(demo.url + "/api/v4/version")
    assert status == 200 and headers["X-Demo-Version"] == "16.6.0"
    assert json.loads(body)["version"] == "16.6.0"


def test_another_versions_asset_is_404(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo(version="16.6.0")
    status, headers, _ = http_get(f"{demo.url}/assets/application-{asset_hash('16.5.0')}.js")
    assert status == 404 and headers["X-Demo-Version"] == "16.6.0"


def test_startup_delay_is_not_ready_then_ready(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--startup-delay", "1.0")
    assert http_get(demo.url + "/-/readiness")[0] == 503
    assert http_get(demo.url + "/")[0] == 503
    assert http_get(demo.url + "/-/liveness")[0] == 200
    time.sleep(1.1)
    assert http_get(demo.url + "/-/readiness")[0] == 200
    assert http_get(demo.url + "/")[0] == 200


def test_sigterm_lets_a_slow_request_in_flight_finish(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--request-delay-ms", "1500")
    answers: list[tuple[int, bytes]] = []

    def slow_request() -> None:
        status, _headers, body = http_get(demo.url + "/", timeout=10)
        answers.append((status, body))

    client = threading.Thread(target=slow_request)
    client.start()
    time.sleep(0.3)
    demo.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Shutting down: the listening socket is closed, the request in flight goes on.
    with pytest.raises(OSError):
        http_get(demo.url + "/-/liveness", timeout=1)
    assert demo.process.poll() is None
    client.join(timeout=10)
    assert answers and answers[0][0] == 200 and b"16.6.0" in answers[0][1]
    assert demo.process.wait(timeout=5) == 0


def test_fault_never_ready(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--fault", "never-ready")
    time.sleep(0.2)
    assert http_get(demo.url + "/-/readiness")[0] == 503
    assert http_get(demo.url + "/-/liveness")[0] == 200


def test_fault_5xx(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--fault", "5xx")
    assert http_get(demo.url + "/")[0] == 500
    assert http_get(f"{demo.url}/assets/application-{asset_hash('16.6.0')}.css")[0] == 500
    assert http_get(demo.url + "/-/readiness")[0] == 200


def test_fault_5xx_share_answers_exactly_its_share(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--fault", "5xx-share:0.3")
    statuses = [http_get(demo.url + "/")[0] for _ in range(100)]
    assert statuses.count(500) == 30 and statuses.count(200) == 70
    assert http_get(demo.url + "/-/readiness")[0] == 200
    for bad in ("5xx-share:0", "5xx-share:1.5", "5xx-share:x"):
        result = subprocess.run(
            [sys.executable, "-m", "zdu_demo.demo_app", "--version", "1.0.0", "--port", "1", "--fault", bad],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2 and f"fault {bad!r}" in result.stderr, result.stderr


def test_fault_crash_after(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo("--fault", "crash-after:0.3")
    assert demo.process.wait(timeout=5) == 1


def test_fault_applies_only_to_its_version(start_demo: Callable[..., Demo], http_get: Get) -> None:
    spared = start_demo("--fault", "5xx", "--fault-version", "16.5.0", version="16.6.0")
    hit = start_demo("--fault", "5xx", "--fault-version", "16.5.0", version="16.5.0")
    assert http_get(spared.url + "/")[0] == 200
    assert http_get(hit.url + "/")[0] == 500


def test_unknown_fault_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zdu_demo.demo_app", "--version", "1.0.0", "--port", "1", "--fault", "bad"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "unknown fault 'bad'" in result.stderr


def test_export_assets_writes_what_the_app_serves(
    start_demo: Callable[..., Demo], http_get: Get, tmp_path: Path
) -> None:
    directory = tmp_path / "exported"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "zdu_demo.demo_app",
            "--export-assets",
            str(directory),
            "--version",
            "16.6.0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    fingerprint = asset_hash("16.6.0")
    names = sorted(path.name for path in directory.iterdir())
    assert names == [f"application-{fingerprint}.css", f"application-{fingerprint}.js"]
    assert sorted(done.stdout.split()) == names
    demo = start_demo(version="16.6.0")
    for name in names:
        status, _headers, body = http_get(f"{demo.url}/assets/{name}")
        assert status == 200 and body == (directory / name).read_bytes()


def test_serving_needs_a_port() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zdu_demo.demo_app", "--version", "1.0.0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "--port is required" in result.stderr


# -- HTTP/1.1, the thread pool, writes, streams, websockets, /-/inflight, the shutdown --------------


def call(demo: Demo, method: str, path: str, document: object = None) -> tuple[int, Any]:
    """One request on a new connection; the status and the JSON body (None when it is not JSON)."""
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
    try:
        body = None if document is None else json.dumps(document).encode()
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, None


def inflight(demo: Demo) -> dict[str, int]:
    status, document = call(demo, "GET", "/-/inflight")
    assert status == 200
    assert isinstance(document, dict)
    return document


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    """An existing SQLite file with 16.5's projects table (the app never creates a missing file)."""
    file = tmp_path / "demo.sqlite"
    connection = sqlite3.connect(file)
    connection.executescript(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, legacy_path TEXT NOT NULL);"
        "INSERT INTO projects VALUES (1, 'Demo Project', 'demo-group/demo-project');"
    )
    connection.close()
    return file


class Download:
    """A stream read in a thread: the bytes received, the Content-Length, when the bytes arrived."""

    def __init__(self, demo: Demo, seconds: float, size: int) -> None:
        self.demo, self.path = demo, f"/-/stream?seconds={seconds:g}&size={size}"
        self.status = 0
        self.content_length: int | None = None
        self.received = 0
        self.arrivals: list[tuple[float, int]] = []  # (seconds since the request, bytes so far)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def __enter__(self) -> Download:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=30)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.demo.port, timeout=20)
        start = time.monotonic()
        try:
            connection.request("GET", self.path)
            response = connection.getresponse()
            self.status = response.status
            self.content_length = int(response.headers["Content-Length"])
            while chunk := response.read1(65536):
                self.received += len(chunk)
                self.arrivals.append((time.monotonic() - start, self.received))
        except (OSError, http.client.HTTPException) as error:
            self.error = error
        finally:
            connection.close()


class CableClient:
    """A websocket client on ``/-/cable`` in a thread: the messages it got, the close code it saw."""

    def __init__(self, demo: Demo, send: list[str] | None = None) -> None:
        self.url = f"ws://127.0.0.1:{demo.port}/-/cable"
        self.send = send or []
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> CableClient:
        self.thread.start()
        assert self.connected.wait(10), f"websocket did not connect: {self.error!r}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and not self.closed.is_set():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=15)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in list(self.messages) if message["type"] == kind]

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as socket:
                self.connected.set()
                for text in self.send:
                    await socket.send_str(text)
                reader = asyncio.ensure_future(self._read(socket))
                stopper = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not reader.done():
                    await socket.close()
                    reader.cancel()
                self.close_code = socket.close_code
        except Exception as error:
            self.error = error
            self.connected.set()
        finally:
            self.closed.set()

    async def _read(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))


def test_http_1_1_keeps_the_connection_alive(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
    try:
        connection.request("GET", "/")
        first = connection.getresponse()
        first.read()
        assert connection.sock is not None
        local_port = connection.sock.getsockname()[1]
        assert (first.status, first.version, first.will_close) == (200, 11, False)
        connection.request("GET", "/api/v4/version")
        second = connection.getresponse()
        body = second.read()
        # The same socket carried both: http.client reconnects only after a closed connection.
        assert connection.sock is not None and connection.sock.getsockname()[1] == local_port
        assert second.status == 200 and json.loads(body)["version"] == "16.6.0"
    finally:
        connection.close()


def test_the_thread_pool_queues_requests_as_puma_does(start_demo: Callable[..., Demo]) -> None:
    """Two slow requests at once: one thread serves them one after the other, two side by side."""

    def finish_times(demo: Demo) -> list[float]:
        finished: list[float] = []

        def request() -> None:
            assert call(demo, "GET", "/api/v4/projects/1")[0] == 200
            finished.append(time.monotonic())

        clients = [threading.Thread(target=request) for _ in range(2)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=20)
        assert len(finished) == 2
        return sorted(finished)

    one = finish_times(start_demo("--threads", "1", "--request-delay-ms", "1000"))
    two = finish_times(start_demo("--threads", "2", "--request-delay-ms", "1000"))
    assert one[1] - one[0] >= 0.9  # queued behind the first for its whole delay
    assert two[1] - two[0] < 0.5  # the same requests, side by side


def test_writes_are_durable_and_shared_by_instances_on_one_sqlite_file(
    start_demo: Callable[..., Demo], sqlite_file: Path
) -> None:
    old = start_demo("--database", str(sqlite_file), version="16.5.0")
    new = start_demo("--database", str(sqlite_file), version="16.6.0")

    assert call(old, "POST", "/api/v4/writes", {"key": "k-1"}) == (201, {"key": "k-1", "version": "16.5.0"})
    assert call(new, "POST", "/api/v4/writes", {"key": "k-2"}) == (201, {"key": "k-2", "version": "16.6.0"})
    # Each instance reads the other's write back, and refuses a key the other wrote.
    assert call(new, "GET", "/api/v4/writes/k-1") == (200, {"key": "k-1", "version": "16.5.0"})
    assert call(old, "GET", "/api/v4/writes/k-2") == (200, {"key": "k-2", "version": "16.6.0"})
    assert call(new, "POST", "/api/v4/writes", {"key": "k-1"})[0] == 409
    assert call(old, "GET", "/api/v4/writes/absent")[0] == 404
    keys = ["k-2", "absent", "k-1"]
    assert call(old, "POST", "/api/v4/writes/lookup", {"keys": keys}) == (200, {"found": ["k-2", "k-1"]})

    # Durable once answered: a process killed without a chance to flush anything loses nothing.
    old.process.kill()
    old.process.wait()
    again = start_demo("--database", str(sqlite_file), version="16.5.0")
    assert call(again, "POST", "/api/v4/writes/lookup", {"keys": keys}) == (200, {"found": ["k-2", "k-1"]})
    connection = sqlite3.connect(sqlite_file)
    try:
        rows = connection.execute("SELECT key, version, created_at FROM probe_writes ORDER BY key").fetchall()
    finally:
        connection.close()
    assert [(key, version) for key, version, _ in rows] == [("k-1", "16.5.0"), ("k-2", "16.6.0")]
    assert all(abs(created_at - time.time()) < 600 for _, _, created_at in rows)


def test_writes_without_a_database_are_lost_when_the_instance_stops(
    start_demo: Callable[..., Demo], tmp_path: Path
) -> None:
    first = start_demo()
    assert call(first, "POST", "/api/v4/writes", {"key": "kept-in-memory"})[0] == 201
    assert call(first, "POST", "/api/v4/writes", {"key": "kept-in-memory"})[0] == 409
    assert call(first, "GET", "/api/v4/writes/kept-in-memory")[0] == 200  # the control: it was there
    assert call(first, "POST", "/api/v4/writes/lookup", {"keys": ["kept-in-memory"]})[1] == {
        "found": ["kept-in-memory"]
    }
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=10) == 0
    second = start_demo()
    assert call(second, "GET", "/api/v4/writes/kept-in-memory")[0] == 404
    assert call(second, "POST", "/api/v4/writes/lookup", {"keys": ["kept-in-memory"]})[1] == {"found": []}


def test_bad_write_and_lookup_bodies_are_400_naming_the_field(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    assert call(demo, "POST", "/api/v4/writes", {"key": "k" * 200})[0] == 201  # the longest key
    writes, lookup = "/api/v4/writes", "/api/v4/writes/lookup"
    for path, document, field in (
        (writes, {"key": "k" * 201}, "key:"),
        (writes, {"key": ""}, "key:"),
        (writes, {"key": 7}, "key:"),
        (writes, {}, "key:"),
        (writes, ["key"], "body:"),
        (lookup, {"keys": "k-1"}, "keys:"),
        (lookup, {"keys": ["ok", 3]}, "keys[1]:"),
        (lookup, {"keys": ["k"] * 5001}, "keys:"),
    ):
        status, answer = call(demo, "POST", path, document)
        assert status == 400 and answer["error"].startswith(field), (path, document, answer)
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
    try:
        connection.request("POST", "/api/v4/writes", body=b"{not json")
        response = connection.getresponse()
        assert response.status == 400 and b"body: not JSON" in response.read()
    finally:
        connection.close()
    assert call(demo, "POST", "/api/v4/writes/lookup", {"keys": ["k"] * 5000}) == (200, {"found": []})


def test_the_api_read_follows_the_versions_schema(start_demo: Callable[..., Demo], sqlite_file: Path) -> None:
    without = start_demo()
    assert call(without, "GET", "/api/v4/projects/1") == (
        200,
        {"id": 1, "name": "Demo Project", "path": "demo-project"},
    )
    old = start_demo("--database", str(sqlite_file), version="16.5.0")
    new = start_demo("--database", str(sqlite_file), version="16.6.0")
    assert call(old, "GET", "/api/v4/projects/1") == (
        200,
        {"id": 1, "name": "Demo Project", "path": "demo-group/demo-project"},
    )
    # 16.6 reads a column the schema does not have yet: the query fails, the read answers 500.
    assert call(new, "GET", "/api/v4/projects/1")[0] == 500


def test_fault_5xx_covers_api_reads_and_writes_but_not_health(start_demo: Callable[..., Demo]) -> None:
    spared = start_demo("--fault", "5xx", "--fault-version", "16.5.0")
    hit = start_demo("--fault", "5xx")
    for demo, expected in ((spared, (200, 201, 200)), (hit, (500, 500, 500))):
        statuses = (
            call(demo, "GET", "/api/v4/projects/1")[0],
            call(demo, "POST", "/api/v4/writes", {"key": "k"})[0],
            call(demo, "POST", "/api/v4/writes/lookup", {"keys": ["k"]})[0],
        )
        assert statuses == expected
    assert call(hit, "GET", "/-/readiness")[0] == 200
    assert call(hit, "GET", "/-/inflight")[0] == 200


def test_a_stream_sends_exactly_its_size_spread_over_its_seconds(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    with Download(demo, seconds=2, size=100_000) as download:
        wait_for(lambda: bool(download.arrivals) or not download.thread.is_alive())
        during = inflight(demo)
    assert download.error is None and download.status == 200
    assert download.content_length == 100_000 and download.received == 100_000
    first_at, first_bytes = download.arrivals[0]
    last_at = download.arrivals[-1][0]
    assert first_bytes < 100_000 and first_at < 1.0  # it began at once, with a part of the body
    assert last_at >= 1.8  # and ended about 2 s later
    assert during == {"requests": 1, "streams": 1, "websockets": 0}
    assert inflight(demo) == {"requests": 0, "streams": 0, "websockets": 0}
    assert call(demo, "GET", "/-/stream?seconds=601")[0] == 400
    assert call(demo, "GET", "/-/stream?size=-1")[0] == 400


def test_inflight_counts_requests_but_not_health_checks_or_websockets(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--request-delay-ms", "1500")
    assert inflight(demo) == {"requests": 0, "streams": 0, "websockets": 0}
    slow = threading.Thread(target=call, args=(demo, "GET", "/"))
    slow.start()
    with CableClient(demo):
        wait_for(lambda: inflight(demo)["requests"] == 1)
        assert call(demo, "GET", "/-/readiness")[0] == 200
        assert inflight(demo) == {"requests": 1, "streams": 0, "websockets": 1}
    slow.join(timeout=10)
    wait_for(lambda: inflight(demo) == {"requests": 0, "streams": 0, "websockets": 0})


def test_the_cable_welcomes_pings_and_echoes(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    with CableClient(demo, send=["hello"]) as cable:
        wait_for(lambda: len(cable.of_type("ping")) >= 2)
    assert cable.error is None
    assert cable.messages[0] == {"type": "welcome", "version": "16.6.0"}
    assert cable.of_type("echo") == [{"type": "echo", "message": "hello"}]
    for ping in cable.of_type("ping"):
        assert isinstance(ping["message"], int) and abs(ping["message"] - time.time()) < 60


def test_sigterm_blackout_then_streams_finish_and_websockets_close_with_1001(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--blackout-seconds", "1.0")
    assert call(demo, "GET", "/-/readiness")[0] == 200  # the control: ready before the signal
    with CableClient(demo) as cable, Download(demo, seconds=3, size=300_000) as download:
        wait_for(lambda: inflight(demo) == {"requests": 1, "streams": 1, "websockets": 1})
        demo.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Readiness fails at once; the blackout goes on accepting connections and serving.
        wait_for(lambda: call(demo, "GET", "/-/readiness")[0] == 503, timeout=1.0)
        assert call(demo, "GET", "/")[0] == 200
        refused = False
        while time.monotonic() < signalled + 10 and not refused:
            try:
                call(demo, "GET", "/-/liveness")
                time.sleep(0.05)
            except ConnectionRefusedError:
                refused = True
        refused_after = time.monotonic() - signalled
        # Refused while the stream still runs: the listening socket closed, not the process gone.
        still_running = demo.process.poll() is None and download.thread.is_alive()
        assert refused and still_running, (refused, refused_after, download.received)
        assert refused_after >= 0.9  # not before the blackout passed
        cable.closed.wait(timeout=15)
    assert download.error is None and download.status == 200
    assert download.received == download.content_length == 300_000
    assert cable.close_code == 1001 and cable.error is None
    assert demo.process.wait(timeout=15) == 0


def test_writes_and_the_api_read_on_postgresql(
    start_demo: Callable[..., Demo], postgres_server: migration_fixtures.PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url(postgres_server.create_database())
    with migration_fixtures.postgres_connection(url) as connection:
        connection.execute(
            "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, legacy_path TEXT NOT NULL)"
        )
        connection.execute("INSERT INTO projects VALUES (1, 'Demo Project', 'demo-group/demo-project')")
    old = start_demo("--database", url, version="16.5.0")
    new = start_demo("--database", url, version="16.6.0")

    assert call(old, "POST", "/api/v4/writes", {"key": "k-1"}) == (201, {"key": "k-1", "version": "16.5.0"})
    assert call(new, "GET", "/api/v4/writes/k-1") == (200, {"key": "k-1", "version": "16.5.0"})
    assert call(new, "POST", "/api/v4/writes", {"key": "k-1"})[0] == 409
    assert call(new, "GET", "/api/v4/writes/absent")[0] == 404
    assert call(new, "POST", "/api/v4/writes/lookup", {"keys": ["absent", "k-1"]}) == (
        200,
        {"found": ["k-1"]},
    )
    with migration_fixtures.postgres_connection(url) as connection:
        rows = connection.execute("SELECT key, version FROM probe_writes").fetchall()
    assert rows == [("k-1", "16.5.0")]

    assert call(old, "GET", "/api/v4/projects/1") == (
        200,
        {"id": 1, "name": "Demo Project", "path": "demo-group/demo-project"},
    )
    status, _headers, body = get(new.url + "/api/v4/projects/1")
    assert status == 500 and b'column "path" does not exist' in body
    assert postgres_server.password.encode() not in body
    for log in tmp_path.glob("demo-*.log"):
        assert postgres_server.password not in log.read_text()


def test_a_stream_longer_than_the_shutdown_timeout_is_cut_and_its_client_sees_it(
    start_demo: Callable[..., Demo],
) -> None:
    """The negative control of the graceful shutdown: the same client sees fewer bytes than announced."""
    demo = start_demo("--shutdown-timeout", "0.5")
    with Download(demo, seconds=5, size=50_000) as download:
        wait_for(lambda: inflight(demo)["streams"] == 1)
        demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(timeout=15) == 0
    assert download.status == 200 and download.content_length == 50_000
    assert 0 < download.received < 50_000  # cut: fewer bytes than its Content-Length


def test_sigterm_closes_idle_keep_alive_connections(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        assert not response.will_close  # kept open, idle
        assert connection.sock is not None
        demo.process.send_signal(signal.SIGTERM)
        assert connection.sock.recv(1) == b""  # closed by the server (a timeout raises instead)
    finally:
        connection.close()
    assert demo.process.wait(timeout=10) == 0


def test_a_postgresql_database_without_psycopg_is_a_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "no-psycopg"
    (blocked / "psycopg").mkdir(parents=True)
    (blocked / "psycopg" / "__init__.py").write_text("raise ImportError('psycopg blocked by the test')\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zdu_demo.demo_app",
            "--version",
            "16.6.0",
            "--port",
            "1",
            "--database",
            "postgresql://zdu:s3cret@127.0.0.1:1/gitlab",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(blocked)},
        timeout=30,
    )
    assert result.returncode == 2
    assert "psycopg is not installed: pip install 'zdu[postgresql]'" in result.stderr
    assert "postgresql://zdu:***@127.0.0.1:1/gitlab" in result.stderr and "s3cret" not in result.stderr
