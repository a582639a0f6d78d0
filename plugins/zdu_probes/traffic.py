"""The ``http`` probe's traffic: an open-loop load generator that records exactly one record per attempt.

Why open loop: a client that waits for each answer before sending the next request stops asking
while the service stalls, so a 3 s stall shows up as a handful of slow requests instead of the
hundreds a real crowd would have had stuck (coordinated omission). Here request starts follow a
schedule (constant or Poisson, at ``rps``) that never waits for answers; every scheduled request is
its own task, and its latency is counted from its *scheduled* start (as wrk2 and vegeta do). When
the service stalls, requests pile up in flight up to ``max_in_flight``; a request due beyond that is
recorded as failed (``overload``), never skipped.

Why no retry: aiohttp's client silently resends an idempotent request whose connection was closed
before the answer (``ClientSession._request`` retries on ``ServerDisconnectedError``), so a server
dropping one connection in five looked perfect. The probe (1) turns that off on every session,
(2) opens a fresh connection per request (``force_close``), so a failure is never a race with a
server closing an idle kept-alive connection -- which a browser would retry -- but always the
service's, and (3) counts the connections each request actually used through a trace: should a
future aiohttp retry anyway, the hidden attempts are recorded as failed rather than lost. The price
of (2) is a TCP handshake per request and a socket in TIME_WAIT on the probe's side per request
(60 s on Linux): beyond a few hundred requests/s to a remote host the ephemeral ports run out.

Kinds of traffic, each recorded on its own (see ``figures.RequestKind``): page views by
browser-like visitors (each with its own cookie jar) followed by the assets the page references;
API reads; writes of a unique key, read back once about a second after the acknowledgement and all
together at the end; long downloads (``streams``); websockets held for the whole run (``sockets``).

A visitor browses as a person does: one page (with its assets) at a time. A page view falls due on
the schedule whatever the answers, and goes to a visitor who is not loading a page; when every
visitor is busy (the service is slow) a new visitor arrives, as a real crowd keeps arriving. So a
page's assets are always asked for with the cookies that page's answer set, which is what sticky
sessions promise. API reads and writes come from API clients: no browser cookies.

Everything runs in one background thread with its own asyncio loop; the probe reads the records
through the ``record`` callback, so measuring never waits on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import aiohttp
import attrs
import yarl

from zdu_probes.config import KINDS_IN_MIX, HttpProbeConfig
from zdu_probes.figures import ErrorKind, RequestKind, RequestRecord, WriteCheck

__all__ = ["LOOKUP_BATCH", "READ_BACK_DELAY_S", "Traffic", "find_assets"]

logger = logging.getLogger("zdu.probes.http")

#: Seconds between a write's acknowledgement and its read-back during the run.
READ_BACK_DELAY_S = 1.0

#: Keys per call of ``lookup_path`` at the end of the run (the demo app accepts up to 5000).
LOOKUP_BATCH = 5000

#: Seconds between two attempts to reopen a websocket that could not be opened.
SOCKET_RETRY_S = 0.5

_ASSET_REFERENCE = re.compile(
    r"""(?:src|href)\s*=\s*["']((?:[^"'<>\s]*/)?assets/[^"'<>\s]+)["']""", re.IGNORECASE
)


def find_assets(page_url: yarl.URL, html: str) -> list[yarl.URL]:
    """Find the fingerprinted assets (``/assets/...``) a page references: resolved, in order, once each."""
    found: dict[yarl.URL, None] = {}
    for reference in _ASSET_REFERENCE.findall(html):
        try:
            url = page_url.join(yarl.URL(reference.replace("&amp;", "&")))
        except ValueError:
            continue
        if url.path.startswith("/assets/") and url.scheme in ("http", "https"):
            found[url.with_fragment(None)] = None
    return list(found)


@attrs.define
class _Visitor:
    """A browser-like visitor: a session with its own cookie jar, coming back as new every few pages."""

    index: int
    session: aiohttp.ClientSession
    visit: int = 1
    pages: int = 0
    #: loading a page (and its assets) now
    busy: bool = False

    @property
    def who(self) -> tuple[int, int]:
        """(visitor, visit), as records name them."""
        return self.index, self.visit


@attrs.define
class _Attempts:
    """What the trace saw of one request: connections used and redirects followed."""

    connections: int = 0
    redirects: int = 0

    @property
    def hidden(self) -> int:
        """Attempts the client made on its own (a retry): connections beyond one per hop."""
        return max(0, self.connections - self.redirects - 1)


async def _count_connection(_session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object) -> None:
    attempts = ctx.trace_request_ctx
    if isinstance(attempts, _Attempts):
        attempts.connections += 1


async def _count_redirect(_session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object) -> None:
    attempts = ctx.trace_request_ctx
    if isinstance(attempts, _Attempts):
        attempts.redirects += 1


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(_count_connection)
    trace.on_connection_reuseconn.append(_count_connection)
    trace.on_request_redirect.append(_count_redirect)
    return trace


def _error_for(kind: RequestKind, status: int) -> ErrorKind | None:
    """Classify an answer: which statuses make which kind of request go wrong."""
    if status >= 500:
        return ErrorKind.HTTP_5XX
    if kind is RequestKind.ASSET and status == 404:
        return ErrorKind.ASSET_404
    if kind is RequestKind.READ_BACK and status == 404:
        return ErrorKind.MISSING
    if kind in (RequestKind.WRITE, RequestKind.READ_BACK, RequestKind.LOOKUP) and not 200 <= status < 300:
        return ErrorKind.REJECTED
    return None


class Traffic:
    """The visitors, their sessions and the loop they run in (all inside the traffic thread).

    :meth:`run` is the thread's target; :meth:`request_stop` (from any thread) ends the schedule,
    waits for the requests in flight (bounded by :meth:`drain_seconds`), reads every acknowledged
    write back through ``lookup_path`` and closes. :attr:`error` says why the traffic died, if it did;
    :attr:`final` holds the final write check once the traffic has stopped.
    """

    def __init__(self, config: HttpProbeConfig, url: str, record: Callable[[RequestRecord], None]) -> None:
        self._config = config
        self._base = yarl.URL(url)
        self._record = record
        self._stopping: asyncio.Event | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._read_backs: set[asyncio.Task[None]] = set()
        self._acknowledged: list[str] = []
        self._next_visitor = 0
        self._sessions: Callable[[], aiohttp.ClientSession] | None = None
        self._api_session: aiohttp.ClientSession | None = None
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: str | None = None
        self.final: WriteCheck | None = None
        self.finished = threading.Event()

    @property
    def _api(self) -> aiohttp.ClientSession:
        """The API clients' session (no cookies); there only while the traffic runs."""
        assert self._api_session is not None, "API requests are sent only while the traffic runs"
        return self._api_session

    # --- lifecycle -----------------------------------------------------------------------------

    def drain_seconds(self) -> float:
        """How long the stop waits for the requests in flight: the longest one may take, plus 1 s."""
        longest = 2 * self._config.timeout  # a page, then its assets
        if self._config.streams:
            longest = max(longest, self._config.stream_seconds + self._config.timeout)
        return longest + 1.0

    def stop_budget(self) -> float:
        """An upper bound of the time from :meth:`request_stop` to the end of the thread."""
        batches = len(self._acknowledged) // LOOKUP_BATCH + 1
        return self.drain_seconds() + batches * self._config.timeout + 5.0

    def run(self, ready: threading.Event) -> None:
        """The traffic thread: run the loop until stopped; record why, should it die."""
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:  # the probe must learn that its traffic died, whatever killed it
            self.error = f"the probe's traffic died: {type(exc).__name__}: {exc}"
            logger.exception("http probe traffic stopped by an unexpected error")
        finally:
            ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self.finished.set()

    def request_stop(self) -> None:
        """Ask the traffic to stop (from any thread); returns at once."""
        loop, stopping = self.loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopping.set)

    def _now_wall(self, monotonic: float) -> float:
        return self._wall0 + (monotonic - self._mono0)

    async def _main(self, ready: threading.Event) -> None:
        config = self._config
        self._stopping = asyncio.Event()
        headers = {name: secret.reveal() for name, secret in config.headers.items()}
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        trace = _trace_config()

        def session(*, cookies: bool = True) -> aiohttp.ClientSession:
            made = aiohttp.ClientSession(
                connector=connector,
                connector_owner=False,
                cookie_jar=aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                trace_configs=[trace],
            )
            # No silent resend of a GET whose connection closed (see the module docstring).
            if hasattr(made, "_retry_connection"):
                made._retry_connection = False
            return made

        visitors = [_Visitor(index, session()) for index in range(config.clients)]
        self._sessions = session
        # API clients (reads, writes, read-backs), streams, websockets, the final lookups: no cookies
        service = session(cookies=False)
        self._api_session = service
        background: list[asyncio.Task[None]] = [
            asyncio.create_task(self._schedule(visitors), name="zdu-http-schedule")
        ]
        if config.streams:
            background.append(asyncio.create_task(self._schedule_streams(service), name="zdu-http-streams"))
        sockets = [
            asyncio.create_task(self._hold_socket(index, service), name=f"zdu-http-socket-{index}")
            for index in range(config.sockets)
        ]
        ready.set()
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                [stopping, *background, *sockets], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if not stopping.done():
                raise RuntimeError("a traffic task ended on its own")
        finally:
            self._stopping.set()
            stopping.cancel()
            for task in [*background, *sockets]:
                task.cancel()
            await asyncio.gather(*background, *sockets, return_exceptions=True)
            await self._drain()
            try:
                self.final = await self._final_check(service)
            except Exception:  # never a believable zero: every acknowledged write is then unverified
                logger.exception("http probe: the final read-back of the writes went wrong")
                self.final = WriteCheck(unverified=len(self._acknowledged))
            await asyncio.gather(
                *(v.session.close() for v in visitors), service.close(), return_exceptions=True
            )
            await connector.close()

    async def _drain(self) -> None:
        """Wait for the requests in flight (bounded); cancel, and so record, those still running."""
        pending = self._in_flight | self._read_backs
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=self.drain_seconds())
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # --- schedules -----------------------------------------------------------------------------

    def _launch(self, due: float, kind: RequestKind, path: str, work: Coroutine[Any, Any, None]) -> bool:
        """Start a scheduled request, or record it as ``overload`` when too many are in flight.

        Returns whether it started.
        """
        if len(self._in_flight) >= self._config.max_in_flight:
            work.close()
            self._emit(kind, path, due, status=None, error=ErrorKind.OVERLOAD, scheduled=True)
            return False
        task = asyncio.create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return True

    async def _sleep_until(self, due: float) -> bool:
        """Sleep until ``due`` (monotonic); False once the traffic is stopping."""
        assert self._stopping is not None
        delay = due - time.monotonic()
        if 0 < delay < 0.1:  # the schedule's ticks: a plain sleep is cheaper
            await asyncio.sleep(delay)
        elif delay > 0:  # longer waits (read-backs, socket retries) end at once on stop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    async def _schedule(self, visitors: list[_Visitor]) -> None:
        """Start pages, API reads and writes at ``rps``, in the shares of ``mix``, whatever the answers."""
        config = self._config
        shares = [(kind, config.mix[kind]) for kind in KINDS_IN_MIX if config.mix[kind] > 0]
        credits = dict.fromkeys((kind for kind, _ in shares), 0.0)
        rng = random.Random()
        poisson = config.schedule == "poisson"
        start = time.monotonic()
        due, count, turn = start, 0, 0
        while await self._sleep_until(due):
            now = time.monotonic()
            while due <= now:  # catch up with every start that fell due, each at its own time
                if poisson:
                    pick = rng.random()
                    kind = shares[-1][0]
                    for candidate, share in shares:
                        if pick < share:
                            kind = candidate
                            break
                        pick -= share
                else:  # smooth weighted round robin: exact shares, evenly interleaved
                    for candidate, share in shares:
                        credits[candidate] += share
                    kind = max(credits, key=lambda k: credits[k])
                    credits[kind] -= 1.0
                if kind == "page":
                    visitor = self._idle_visitor(visitors)
                else:  # API clients: the visitor only names who sent it in the records
                    visitor = visitors[turn % len(visitors)]
                    turn += 1
                self._start(kind, visitor, due)
                count += 1
                due = due + rng.expovariate(config.rps) if poisson else start + count / config.rps

    def _idle_visitor(self, visitors: list[_Visitor]) -> _Visitor:
        """A visitor not loading a page now (the longest idle first); a new one when all are busy."""
        for _ in range(len(visitors)):
            visitor = visitors[self._next_visitor % len(visitors)]
            self._next_visitor += 1
            if not visitor.busy:
                return visitor
        assert self._sessions is not None, "visitors arrive only while the traffic runs"
        visitor = _Visitor(len(visitors), self._sessions())
        visitors.append(visitor)
        return visitor

    def _start(self, kind: str, visitor: _Visitor, due: float) -> None:
        config = self._config
        if kind == "page":
            visitor.pages += 1
            if config.session_pages and visitor.pages > config.session_pages:
                visitor.session.cookie_jar.clear()
                visitor.visit += 1
                visitor.pages = 1
            visitor.busy = True
            if not self._launch(
                due, RequestKind.PAGE, config.path, self._page_view(visitor, visitor.who, due)
            ):
                visitor.busy = False
        elif kind == "api":
            url = self._base.join(yarl.URL(config.api_path))
            self._launch(
                due,
                RequestKind.API,
                url.path,
                self._attempt(RequestKind.API, url, self._api, due, who=visitor.who, scheduled=True),
            )
        else:
            self._launch(due, RequestKind.WRITE, config.write_path, self._write(visitor, visitor.who, due))

    async def _schedule_streams(self, session: aiohttp.ClientSession) -> None:
        """Start long downloads at ``streams / stream_seconds`` per second, so ``streams`` run at once."""
        config = self._config
        url = self._base.join(
            yarl.URL(config.stream_path.format(seconds=f"{config.stream_seconds:g}", size=config.stream_size))
        )
        start = time.monotonic()
        due, count = start, 0
        while await self._sleep_until(due):
            now = time.monotonic()
            while due <= now:
                self._launch(due, RequestKind.STREAM, url.path, self._stream(session, url, due))
                count += 1
                due = start + count * config.stream_seconds / config.streams

    # --- one attempt ---------------------------------------------------------------------------

    def _emit(
        self,
        kind: RequestKind,
        path: str,
        due: float,
        *,
        status: int | None,
        error: ErrorKind | None,
        finished: float | None = None,
        version: str | None = None,
        who: tuple[int, int] = (0, 1),
        scheduled: bool = False,
        key: str | None = None,
        reconnect: bool = False,
    ) -> RequestRecord:
        record = RequestRecord(
            kind=kind,
            path=path,
            started=due,
            finished=time.monotonic() if finished is None else finished,
            started_wall=self._now_wall(due),
            status=status,
            error=error,
            version=version,
            client=who[0],
            visit=who[1],
            scheduled=scheduled,
            key=key,
            reconnect=reconnect,
        )
        self._record(record)
        return record

    async def _attempt(
        self,
        kind: RequestKind,
        url: yarl.URL,
        session: aiohttp.ClientSession,
        due: float,
        *,
        method: str = "GET",
        payload: object = None,
        who: tuple[int, int] = (0, 1),
        scheduled: bool = False,
        key: str | None = None,
    ) -> None:
        await self._request(
            kind,
            url,
            session,
            due,
            method=method,
            payload=payload,
            who=who,
            scheduled=scheduled,
            key=key,
        )

    async def _request(
        self,
        kind: RequestKind,
        url: yarl.URL,
        session: aiohttp.ClientSession,
        due: float,
        *,
        method: str = "GET",
        payload: object = None,
        who: tuple[int, int] = (0, 1),
        scheduled: bool = False,
        key: str | None = None,
    ) -> tuple[RequestRecord, yarl.URL, bytes]:
        """Send one request, once, and record it; the record, the final URL and the body."""
        attempts = _Attempts()
        status: int | None = None
        error: ErrorKind | None = None
        version: str | None = None
        final_url, body = url, b""
        try:
            async with session.request(
                method,
                url,
                json=payload,
                allow_redirects=method == "GET",
                trace_request_ctx=attempts,
            ) as response:
                status = response.status
                version = response.headers.get(self._config.version_header)
                final_url = response.url
                body = await response.read()
            error = _error_for(kind, status)
        except TimeoutError:
            error = ErrorKind.TIMEOUT
        except (aiohttp.ClientError, OSError) as exc:
            error = ErrorKind.CONNECTION
            logger.debug("http probe: %s %s: %s", kind.value, url.path, type(exc).__name__)
        except asyncio.CancelledError:  # still unanswered when the stop's drain ended
            self._emit(
                kind,
                url.path,
                due,
                status=None,
                error=ErrorKind.TIMEOUT,
                who=who,
                scheduled=scheduled,
                key=key,
            )
            raise
        except Exception:  # a bug of the probe: logged, and the attempt still recorded
            logger.exception("http probe: unexpected error on %s %s", kind.value, url.path)
            error = ErrorKind.INTERNAL
        for _ in range(attempts.hidden):  # a resend the client made on its own: a failed attempt
            logger.error("http probe: the HTTP client resent %s %s on its own", method, url.path)
            self._emit(
                kind,
                url.path,
                due,
                status=None,
                error=ErrorKind.CONNECTION,
                who=who,
                scheduled=scheduled,
                key=key,
            )
        record = self._emit(
            kind,
            url.path,
            due,
            status=status,
            error=error,
            version=version,
            who=who,
            scheduled=scheduled,
            key=key,
        )
        return record, final_url, body

    # --- kinds ---------------------------------------------------------------------------------

    async def _page_view(self, visitor: _Visitor, who: tuple[int, int], due: float) -> None:
        """A page, then every asset it references, fetched together by the same visitor."""
        try:
            url = self._base.join(yarl.URL(self._config.path))
            record, final_url, body = await self._request(
                RequestKind.PAGE, url, visitor.session, due, who=who, scheduled=True
            )
            if record.error is not None or record.status is None or not 200 <= record.status < 300:
                return
            # after redirects: GitLab's / may send a visitor to /users/sign_in
            assets = find_assets(final_url, body.decode("utf-8", errors="replace"))
            now = time.monotonic()
            await asyncio.gather(
                *(self._attempt(RequestKind.ASSET, asset, visitor.session, now, who=who) for asset in assets)
            )
        finally:
            visitor.busy = False

    async def _write(self, visitor: _Visitor, who: tuple[int, int], due: float) -> None:
        """Post a unique key, once; read it back about a second after it is acknowledged."""
        key = uuid.uuid4().hex
        url = self._base.join(yarl.URL(self._config.write_path))
        record, _, _ = await self._request(
            RequestKind.WRITE,
            url,
            self._api,
            due,
            method="POST",
            payload={"key": key},
            who=who,
            scheduled=True,
            key=key,
        )
        if record.acknowledged:
            self._acknowledged.append(key)
            task = asyncio.create_task(self._read_back(visitor, key))
            self._read_backs.add(task)
            task.add_done_callback(self._read_backs.discard)

    async def _read_back(self, visitor: _Visitor, key: str) -> None:
        if not await self._sleep_until(time.monotonic() + READ_BACK_DELAY_S):
            return  # stopping: the final lookup checks it
        url = self._base.join(yarl.URL(self._config.read_back_path.format(key=key)))
        await self._attempt(RequestKind.READ_BACK, url, self._api, time.monotonic(), who=visitor.who, key=key)

    async def _final_check(self, session: aiohttp.ClientSession) -> WriteCheck | None:
        """Look every acknowledged write up, in batches; None when the run made no writes at all."""
        if not self._acknowledged and self._config.mix["write"] == 0:
            return None
        url = self._base.join(yarl.URL(self._config.lookup_path))
        checked, unverified, missing = 0, 0, set()
        keys = list(self._acknowledged)
        for first in range(0, len(keys), LOOKUP_BATCH):
            batch = keys[first : first + LOOKUP_BATCH]
            record, _, body = await self._request(
                RequestKind.LOOKUP, url, session, time.monotonic(), method="POST", payload={"keys": batch}
            )
            found: Any = None
            if not record.failed:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    found = json.loads(body)["found"]
            if not isinstance(found, list):
                if not record.failed:
                    logger.warning('http probe: %s did not answer {"found": [...]}', url.path)
                unverified += len(batch)
                continue
            checked += len(batch)
            missing |= set(batch) - {str(k) for k in found}
        return WriteCheck(checked=checked, missing=frozenset(missing), unverified=unverified)

    async def _stream(self, session: aiohttp.ClientSession, url: yarl.URL, due: float) -> None:
        """A long download: cut when it ends short of ``Content-Length``, is reset or times out."""
        answered = False
        status: int | None = None
        error: ErrorKind | None = None
        version: str | None = None
        attempts = _Attempts()
        timeout = aiohttp.ClientTimeout(total=self._config.stream_seconds + self._config.timeout)
        try:
            async with session.get(url, timeout=timeout, trace_request_ctx=attempts) as response:
                answered, status = True, response.status
                version = response.headers.get(self._config.version_header)
                if status >= 500:
                    error = ErrorKind.HTTP_5XX
                expected, received = response.content_length, 0
                async for chunk in response.content.iter_any():
                    received += len(chunk)
                if error is None and expected is not None and received < expected:
                    error = ErrorKind.CUT
        except TimeoutError:
            error = ErrorKind.CUT if answered else ErrorKind.TIMEOUT
        except (aiohttp.ClientError, OSError):
            error = ErrorKind.CUT if answered else ErrorKind.CONNECTION
        except asyncio.CancelledError:
            self._emit(
                RequestKind.STREAM,
                url.path,
                due,
                status=status,
                error=ErrorKind.CUT if answered else ErrorKind.TIMEOUT,
                scheduled=True,
            )
            raise
        except Exception:
            logger.exception("http probe: unexpected error on a stream")
            error = ErrorKind.INTERNAL
        for _ in range(attempts.hidden):
            self._emit(
                RequestKind.STREAM, url.path, due, status=None, error=ErrorKind.CONNECTION, scheduled=True
            )
        self._emit(
            RequestKind.STREAM, url.path, due, status=status, error=error, version=version, scheduled=True
        )

    async def _open_socket(
        self, session: aiohttp.ClientSession, url: yarl.URL
    ) -> aiohttp.ClientWebSocketResponse:
        async with asyncio.timeout(self._config.timeout):
            return await session.ws_connect(url, autoclose=True, autoping=True)

    async def _hold_socket(self, index: int, session: aiohttp.ClientSession) -> None:
        """Hold one websocket for the whole run; reopen it when it ends, recording how it ended."""
        url = self._base.join(yarl.URL(self._config.socket_path))
        timeout = self._config.timeout
        reconnect = False
        while self._stopping is not None and not self._stopping.is_set():
            due = time.monotonic()
            connect = asyncio.ensure_future(self._open_socket(session, url))
            stopped = False
            try:
                await asyncio.shield(connect)
            except asyncio.CancelledError:  # the run ends mid-handshake: finish it (within the timeout)
                stopped = True
                await asyncio.wait([connect])
            except Exception:  # noqa: S110 -- read from the future below
                pass
            failed = connect.exception()
            if failed is not None:  # refused, reset, timed out, or not upgraded (a 5xx, say)
                status = getattr(failed, "status", None)
                failure = ErrorKind.CONNECTION
                if isinstance(failed, TimeoutError):
                    failure = ErrorKind.TIMEOUT
                elif isinstance(status, int) and status >= 500:
                    failure = ErrorKind.HTTP_5XX
                self._emit(
                    RequestKind.SOCKET,
                    url.path,
                    due,
                    status=status if isinstance(status, int) else None,
                    error=failure,
                    reconnect=reconnect,
                )
                if stopped:
                    raise asyncio.CancelledError
                reconnect = False
                await self._sleep_until(time.monotonic() + SOCKET_RETRY_S)
                continue
            ws = connect.result()
            if stopped:
                self._emit(RequestKind.SOCKET, url.path, due, status=101, error=None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)
                raise asyncio.CancelledError
            response = getattr(ws, "_response", None)
            version = response.headers.get(self._config.version_header) if response is not None else None
            error: ErrorKind | None = None
            try:
                while True:
                    message = await ws.receive(timeout=timeout)
                    if message.type is aiohttp.WSMsgType.CLOSE:  # the server said goodbye
                        reconnect = True
                        break
                    if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        error, reconnect = ErrorKind.DROPPED, False  # gone without a close frame
                        break
            except TimeoutError:  # silent for longer than the timeout
                error, reconnect = ErrorKind.DROPPED, False
            except asyncio.CancelledError:  # the run ends: the probe closes it
                self._emit(RequestKind.SOCKET, url.path, due, status=101, error=None, version=version)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)
                raise
            except Exception:
                error, reconnect = ErrorKind.DROPPED, False
            self._emit(RequestKind.SOCKET, url.path, due, status=101, error=error, version=version)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
