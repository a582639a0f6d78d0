"""Small real servers on loopback for the http probe's tests: a demo-app double with failure switches,
and a raw server that drops connections. Each runs its own asyncio loop in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

SCRIPT = "/assets/application-3f2a9c.js"
STYLE = "/assets/application-77be01.css"
PAGE = f"""<!doctype html>
<html><head>
<link rel="stylesheet" href="{STYLE}">
<script src="{SCRIPT}" defer></script>
</head><body><a href="/about">about</a></body></html>
"""


class LoopThread:
    """An asyncio loop in a daemon thread; ``call`` runs a coroutine on it and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Awaitable[Any], timeout: float = 30) -> Any:
        async def wrap() -> Any:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class DemoApp:
    """The demo app's contract (pages, API, writes, streams, websockets) with failure switches.

    :ivar stall_until: monotonic time until which every request waits before being answered.
    :ivar forget_every: forget every n-th acknowledged write (0: never).
    :ivar cut_every: cut every n-th stream half-way by closing the connection (0: never).
    :ivar lookup_status: the status of ``POST /api/v4/writes/lookup`` (200 answers it).
    :ivar reject_reconnects: answer 503 to every websocket after the first.
    :ivar socket_mode: ``"ok"``, ``"drop"`` (abort the TCP connection after ``socket_after`` s) or
        ``"close"`` (a close frame 1001 after ``socket_after`` s) or ``"silent"`` (stop sending after
        ``socket_after`` s); only the first connection misbehaves.
    """

    def __init__(self) -> None:
        self.stall_until = 0.0
        self.forget_every = 0
        self.cut_every = 0
        self.socket_mode = "ok"
        self.socket_after = 1.0
        self.lookup_status = 200
        self.reject_reconnects = False
        self.writes: dict[str, int] = {}
        self.acknowledged = 0
        self.forgotten: set[str] = set()
        self.streams_started = 0
        self.cut: int = 0
        self.socket_connections = 0
        self.arrivals: list[float] = []
        self._loop = LoopThread()
        app = web.Application()
        app.router.add_get("/", self.page)
        app.router.add_get("/assets/{name}", self.asset)
        app.router.add_get("/api/v4/projects/1", self.api)
        app.router.add_post("/api/v4/writes/lookup", self.lookup)
        app.router.add_post("/api/v4/writes", self.write)
        app.router.add_get("/api/v4/writes/{key}", self.read_back)
        app.router.add_get("/-/stream", self.stream)
        app.router.add_get("/-/cable", self.cable)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        self.port = self._loop.call(self._start())

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stall_until = 0.0
        self._loop.call(self._runner.cleanup())
        self._loop.close()

    def stall(self, seconds: float) -> tuple[float, float]:
        """Hold every request until ``seconds`` from now; the stall's (start, end), monotonic."""
        start = time.monotonic()
        self.stall_until = start + seconds
        return start, self.stall_until

    async def _wait_stall(self) -> None:
        self.arrivals.append(time.monotonic())
        delay = self.stall_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"X-Demo-Version": "16.5.0"}

    async def page(self, request: web.Request) -> web.Response:
        await self._wait_stall()
        return web.Response(text=PAGE, content_type="text/html", headers=self._headers())

    async def asset(self, request: web.Request) -> web.Response:
        await self._wait_stall()
        return web.Response(body=b"x" * 200, headers=self._headers())

    async def api(self, request: web.Request) -> web.Response:
        await self._wait_stall()
        return web.json_response({"id": 1, "name": "demo"}, headers=self._headers())

    async def write(self, request: web.Request) -> web.Response:
        await self._wait_stall()
        key = str((await request.json())["key"])
        if key in self.writes:
            return web.json_response({"error": "duplicate"}, status=409, headers=self._headers())
        self.acknowledged += 1
        if self.forget_every and self.acknowledged % self.forget_every == 0:
            self.forgotten.add(key)  # acknowledged, never stored
        else:
            self.writes[key] = 1
        return web.json_response({"key": key, "version": 1}, status=201, headers=self._headers())

    async def read_back(self, request: web.Request) -> web.Response:
        await self._wait_stall()
        if request.match_info["key"] in self.writes:
            return web.json_response({"key": request.match_info["key"]}, headers=self._headers())
        return web.json_response({"error": "not found"}, status=404, headers=self._headers())

    async def lookup(self, request: web.Request) -> web.Response:
        keys = (await request.json())["keys"]
        if self.lookup_status != 200:
            return web.json_response({"error": "down"}, status=self.lookup_status, headers=self._headers())
        return web.json_response({"found": [k for k in keys if k in self.writes]}, headers=self._headers())

    async def stream(self, request: web.Request) -> web.StreamResponse:
        seconds, size = float(request.query["seconds"]), int(request.query["size"])
        self.streams_started += 1
        cut = bool(self.cut_every) and self.streams_started % self.cut_every == 0
        response = web.StreamResponse(headers=self._headers())
        response.content_length = size
        await response.prepare(request)
        chunks = 10
        for index in range(chunks):
            if cut and index == chunks // 2:
                self.cut += 1
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(
                b"y" * (size // chunks if index < chunks - 1 else size - (size // chunks) * (chunks - 1))
            )
            await asyncio.sleep(seconds / chunks)
        await response.write_eof()
        return response

    async def cable(self, request: web.Request) -> web.StreamResponse:
        if self.reject_reconnects and self.socket_connections:
            return web.Response(status=503, text="going away")
        ws = web.WebSocketResponse()
        ws.headers.update(self._headers())
        await ws.prepare(request)
        self.socket_connections += 1
        first = self.socket_connections == 1
        await ws.send_json({"type": "welcome"})
        opened = time.monotonic()
        while not ws.closed:
            try:
                await ws.send_json({"type": "ping"})
            except ConnectionError:  # the client went away
                break
            await asyncio.sleep(0.2)
            if first and time.monotonic() - opened > self.socket_after:
                if self.socket_mode == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    break
                if self.socket_mode == "silent":  # still connected, never a word again
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(30)
                    break
                if self.socket_mode == "close":
                    await ws.close(code=1001, message=b"going away")
                    break
        return ws


class DroppingServer:
    """A raw HTTP server that accepts every connection and closes every ``drop_every``-th one without
    answering (the others get a 200 and are closed); it counts the connections it accepted."""

    def __init__(self, drop_every: int) -> None:
        self.drop_every = drop_every
        self.connections = 0
        self.dropped = 0
        self._loop = LoopThread()
        self._server: asyncio.Server | None = None
        self.port = self._loop.call(self._start())

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if self.drop_every and number % self.drop_every == 0:
                    self.dropped += 1
                    break
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Demo-Version: 1\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            server = self._server
            self._loop.call(_close_server(server))
        self._loop.close()


async def _close_server(server: asyncio.Server) -> None:
    server.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
