"""wrk as the independent cross-check: what it counts, against a server whose answers we choose."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from zdu.network import free_port
from zdu_demo.crosscheck import IndependentLoad, find_wrk, parse_output


class Server:
    """An aiohttp server in a thread: pages answer 200, or 503 while ``failing`` is set; writes 201."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.failing = threading.Event()
        self.pages = 0
        self.writes: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _page(self, _request: web.Request) -> web.Response:
        self.pages += 1
        return web.Response(status=503 if self.failing.is_set() else 200, text="page")

    async def _write(self, request: web.Request) -> web.Response:
        self.writes.append((await request.json())["key"])
        return web.json_response({"ok": True}, status=201)

    def _run(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_post("/api/v4/writes", self._write)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Server:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    find_wrk()
    with Server() as running:
        yield running


def test_wrk_counts_no_failure_when_every_answer_is_good(server):
    with IndependentLoad(f"http://127.0.0.1:{server.port}", connections=2, delay_ms=20) as load:
        time.sleep(1.5)
    assert load.result is not None
    assert load.result.failed == 0
    assert load.result.requests > 50
    # every fifth request is a write with a unique key
    assert len(server.writes) >= load.result.requests // 5 - 2
    assert len(set(server.writes)) == len(server.writes)


def test_wrk_counts_the_failures_the_server_gives(server):
    """The negative control of the instrument: answers of 503 for a while are counted, once each."""
    with IndependentLoad(f"http://127.0.0.1:{server.port}", connections=2, delay_ms=20) as load:
        time.sleep(0.5)
        pages_before = server.pages
        server.failing.set()
        time.sleep(0.7)
        server.failing.clear()
        failing_pages = server.pages - pages_before
        time.sleep(0.5)
    assert load.result is not None
    # the pages answered while failing, give or take the requests in flight at either edge
    assert abs(load.result.failed - failing_pages) <= 4, (load.result, failing_pages)
    assert load.result.errors["status"] == load.result.failed


def test_a_refused_start_is_an_error_not_a_zero():
    port = free_port("127.0.0.1")
    load = IndependentLoad(f"http://127.0.0.1:{port}")
    load.start()
    time.sleep(0.3)
    with pytest.raises(RuntimeError, match="wrk stopped without a summary"):
        load.stop()


def test_parse_output_reads_the_summary_line():
    count = parse_output(
        "Running 1m test\n"
        'ZDU-WRK {"requests": 10, "connect": 1, "read": 2, "write": 0, "status": 3, "timeout": 0}\n'
    )
    assert (count.requests, count.failed) == (10, 6)
    with pytest.raises(ValueError, match="no summary"):
        parse_output("unable to connect")
