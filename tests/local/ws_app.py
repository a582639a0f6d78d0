"""A small aiohttp instance for the router and drain tests: websockets, slow requests, dropped ones.

Run as ``python ws_app.py --port P --host H --version V [--no-inflight]``:

* ``GET /-/readiness``: 200 (its listener is closed once it got SIGTERM);
* ``GET /`` and ``GET /slow?seconds=S``: 200 with ``X-Demo-Version`` (after S seconds);
* ``POST /api/v4/writes``: 200;
* ``GET /-/cable``: a websocket echoing text;
* ``GET /-/inflight``: ``{"requests": R, "streams": 0, "websockets": W}`` (404 with ``--no-inflight``);
* ``GET /-/hits``: how many requests (other than the endpoints above starting with ``/-/``) reached it;
* any request with ``drop=<its port>`` in its query: the connection is cut without an answer, after
  the request was read (what a crash mid-request looks like to nginx).

On SIGTERM it stops listening, finishes the requests in flight, closes its websockets with 1001
(going away) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import weakref
from pathlib import Path

import aiohttp
from aiohttp import WSCloseCode, web

_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


def command(*options: str) -> list[str]:
    """This app as a local platform ``command`` template."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--port",
        "{port}",
        "--host",
        "{host}",
        "--version",
        "{version}",
        *options,
    ]


def echo(url: str, text: str = "hello") -> str:
    """Open a websocket to ``url`` (``http://...``), send ``text``, return the echo."""

    async def talk() -> str:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
            await socket.send_str(text)
            message = await socket.receive(timeout=10)
            return str(message.data)

    return asyncio.run(talk())


class HeldSocket(threading.Thread):
    """A websocket held open in a thread until the server closes it: its close code and when."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.connected = threading.Event()
        self.echo = ""
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._hold())
        except BaseException as error:  # reported by the test
            self.error = error
            self.connected.set()

    async def _hold(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as socket:
            await socket.send_str("hello")
            self.echo = str((await socket.receive(timeout=10)).data)
            self.connected.set()
            while (await socket.receive(timeout=60)).type not in _CLOSED:
                pass  # the demo app's pings
            self.closed_at = time.monotonic()
            self.close_code = socket.close_code


def build(version: str, port: int, inflight: bool) -> web.Application:
    """The application."""
    app = web.Application()
    sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
    counts = {"requests": 0, "hits": 0}

    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path.startswith("/-/"):
            return await handler(request)
        counts["hits"] += 1
        if request.query.get("drop") == str(port):
            await request.read()
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        counts["requests"] += 1
        try:
            return await handler(request)
        finally:
            counts["requests"] -= 1

    async def page(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "0")))
        return web.Response(text=f"version {version}\n", headers={"X-Demo-Version": version})

    async def write(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="written\n", headers={"X-Demo-Version": version})

    async def readiness(_request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    async def inflight_count(_request: web.Request) -> web.Response:
        if not inflight:
            raise web.HTTPNotFound()
        return web.json_response({"requests": counts["requests"], "streams": 0, "websockets": len(sockets)})

    async def hits(_request: web.Request) -> web.Response:
        return web.json_response({"hits": counts["hits"]})

    async def cable(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sockets.add(socket)
        async for message in socket:
            await socket.send_str(f"{version}: {message.data}")
        return socket

    async def close_sockets(_app: web.Application) -> None:
        for socket in list(sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    app.middlewares.append(count)
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/", page)
    app.router.add_get("/slow", page)
    app.router.add_post("/api/v4/writes", write)
    app.router.add_get("/-/readiness", readiness)
    app.router.add_get("/-/inflight", inflight_count)
    app.router.add_get("/-/hits", hits)
    app.router.add_get("/-/cable", cable)
    return app


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", default="0")
    parser.add_argument("--no-inflight", action="store_true")
    arguments = parser.parse_args()
    app = build(arguments.version, arguments.port, not arguments.no_inflight)
    web.run_app(app, host=arguments.host, port=arguments.port, print=None, shutdown_timeout=30.0)


if __name__ == "__main__":
    main()
