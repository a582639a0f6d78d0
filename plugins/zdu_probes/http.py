"""The ``http`` probe: browser-like traffic against the Target, judged against an SLO.

While an upgrade runs, the probe plays a crowd of visitors. Each client has its own cookie jar
(so sticky sessions work as for a browser), loads the page, then every fingerprinted asset
(``/assets/...``) the page references, and starts over as a new visitor every ``session_pages``
page views, so that new visitors keep arriving while versions are mixed. A global rate limiter
paces request starts to ``rps`` across all clients.

Every request is kept as a :class:`RequestRecord`. :func:`summarize` turns records into the
figures (requests, failed requests, asset errors, error ratio, latency percentiles, longest
outage) and :func:`judge` compares them with the thresholds of :class:`HttpProbeConfig`; both
are pure functions, so they can be checked without a network.

The traffic runs in a background thread with its own asyncio loop; :meth:`HttpProbe.measure`
only reads what was recorded, so it never waits on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
import yarl

from zdu.model import Measurement, MeasurementStatus, Verdict, VerdictStatus
from zdu.probe import ProbeContext
from zdu.secret import Secret

__all__ = [
    "ErrorKind",
    "HttpProbe",
    "HttpProbeConfig",
    "RequestKind",
    "RequestRecord",
    "Summary",
    "find_assets",
    "judge",
    "longest_outage",
    "run_for",
    "summarize",
]

logger = logging.getLogger("zdu.probes.http")

#: How long :meth:`HttpProbe.stop` waits for the traffic thread to finish.
STOP_TIMEOUT_S = 5.0


# --- configuration ---------------------------------------------------------------------------


def _greater_than_zero(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number greater than 0 (got {value!r})")


def _at_least(minimum: int) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{attribute.name} must be a whole number >= {minimum} (got {value!r})")

    return check


def _optional_count(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a whole number >= 0, or unset (got {value!r})")


def _optional_non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
    ):
        raise ValueError(f"{attribute.name} must be a number >= 0, or unset (got {value!r})")


def _optional_ratio(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
    ):
        raise ValueError(f"{attribute.name} must be a ratio between 0 and 1, or unset (got {value!r})")


def _page_path(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{attribute.name} must be a path starting with '/' (got {value!r})")


def _header_name(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
        raise ValueError(f"{attribute.name} must be an HTTP header name (got {value!r})")


def _to_secret_headers(value: Mapping[str, Secret | str]) -> dict[str, Secret]:
    if not isinstance(value, Mapping):
        raise ValueError(f"headers must be a table of header names to values (got {type(value).__name__})")
    headers: dict[str, Secret] = {}
    for name, secret in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ValueError(f"headers: {name!r} is not an HTTP header name")
        if isinstance(secret, Secret):
            headers[name] = secret
        elif isinstance(secret, str):
            headers[name] = Secret(secret)
        else:  # never show the value: it may be a secret of the wrong type
            raise ValueError(f"headers.{name} must be a string (got a {type(secret).__name__})")
    return headers


@attrs.frozen
class HttpProbeConfig:
    """Configuration of the ``http`` probe (the ``[[probes]]`` table with ``name = "http"``).

    :ivar rps: requests per second the probe sends in total, pages and assets together.
    :ivar clients: concurrent browser-like clients, each with its own cookie jar.
    :ivar path: the page the clients load (assets are found in it).
    :ivar session_pages: page views after which a client drops its cookies and comes back as a new
        visitor; 0 keeps every visitor for the whole run.
    :ivar timeout: seconds a request may take before it counts as failed.
    :ivar headers: sent with every request (a token, for instance); the values are secrets, never
        logged or reported. Plain strings are accepted and wrapped.
    :ivar version_header: the response header naming the version that answered; recorded per request.
    :ivar max_failed_requests: failed requests (connection errors, timeouts, 5xx) tolerated; unset
        for no limit.
    :ivar max_error_ratio: failed requests / requests tolerated (0..1); unset for no limit.
    :ivar max_asset_errors: referenced assets answering 404 tolerated; unset for no limit.
    :ivar max_p99_ms: 99th percentile latency tolerated, in milliseconds; unset for no limit.
    :ivar max_outage_s: longest run of only failed requests tolerated, in seconds; unset for no limit.
    :ivar min_requests: fewer requests than this in a measurement (or the whole run) is inconclusive.
    """

    rps: float = attrs.field(default=100.0, validator=_greater_than_zero)
    clients: int = attrs.field(default=20, validator=_at_least(1))
    path: str = attrs.field(default="/", validator=_page_path)
    session_pages: int = attrs.field(default=20, validator=_at_least(0))
    timeout: float = attrs.field(default=5.0, validator=_greater_than_zero)
    headers: dict[str, Secret] = attrs.field(factory=dict, converter=_to_secret_headers)
    version_header: str = attrs.field(default="X-Demo-Version", validator=_header_name)
    max_failed_requests: int | None = attrs.field(default=0, validator=_optional_count)
    max_error_ratio: float | None = attrs.field(default=None, validator=_optional_ratio)
    max_asset_errors: int | None = attrs.field(default=None, validator=_optional_count)
    max_p99_ms: float | None = attrs.field(default=None, validator=_optional_non_negative)
    max_outage_s: float | None = attrs.field(default=None, validator=_optional_non_negative)
    min_requests: int = attrs.field(default=1, validator=_at_least(0))


# --- records and figures ---------------------------------------------------------------------


class RequestKind(enum.Enum):
    """What a request fetched."""

    PAGE = "page"
    ASSET = "asset"


class ErrorKind(enum.Enum):
    """Why a request went wrong. All but :attr:`ASSET_404` make a *failed* request."""

    CONNECTION = "connection"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    ASSET_404 = "asset_404"


_FAILURES = frozenset({ErrorKind.CONNECTION, ErrorKind.TIMEOUT, ErrorKind.HTTP_5XX})


@attrs.frozen
class RequestRecord:
    """One request the probe sent, as it went.

    :ivar kind: page or asset.
    :ivar path: the URL path requested.
    :ivar started: when the request started (``time.monotonic()``).
    :ivar finished: when it ended (``time.monotonic()``).
    :ivar started_wall: when it started (``time.time()``), for reports and correlation with logs.
    :ivar status: the HTTP status, or None when no response came.
    :ivar error: why it went wrong, or None.
    :ivar version: the value of the configured version header in the response, when present.
    :ivar client: which client sent it (0-based).
    :ivar visit: which visit of that client (1-based; a visit ends after ``session_pages`` pages).
    """

    kind: RequestKind
    path: str
    started: float
    finished: float
    started_wall: float = 0.0
    status: int | None = None
    error: ErrorKind | None = None
    version: str | None = None
    client: int = 0
    visit: int = 1

    @property
    def latency_s(self) -> float:
        """Seconds from start to end (to the error, for a failed request)."""
        return self.finished - self.started

    @property
    def failed(self) -> bool:
        """A connection error, a timeout or a 5xx answer."""
        return self.error in _FAILURES

    @property
    def asset_error(self) -> bool:
        """A referenced asset that answered 404."""
        return self.error is ErrorKind.ASSET_404


@attrs.frozen
class Summary:
    """The figures computed from a set of records (see :func:`summarize`)."""

    requests: int
    failed_requests: int
    asset_errors: int
    error_ratio: float
    p50_ms: float
    p99_ms: float
    longest_outage_s: float

    def values(self) -> dict[str, float]:
        """Return the figures as a Measurement's or Verdict's ``values``."""
        return {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "asset_errors": self.asset_errors,
            "error_ratio": round(self.error_ratio, 6),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "longest_outage_s": round(self.longest_outage_s, 3),
        }


def _percentile(ordered: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values; 0 when there are none."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def longest_outage(records: Sequence[RequestRecord]) -> float:
    """Return the longest span in which every request failed, in seconds.

    An outage runs from the start of the first failed request of a run of failures (in order of
    start) to the start of the next request that did not fail, or to the end of the last failure
    when none follows. Asset 404s are answers, not failures: they end an outage.
    """
    longest = 0.0
    outage_start: float | None = None
    last_failure_end = 0.0
    for record in sorted(records, key=lambda r: r.started):
        if record.failed:
            if outage_start is None:
                outage_start = record.started
                last_failure_end = record.finished
            else:
                last_failure_end = max(last_failure_end, record.finished)
        elif outage_start is not None:
            longest = max(longest, record.started - outage_start)
            outage_start = None
    if outage_start is not None:
        longest = max(longest, last_failure_end - outage_start)
    return longest


def summarize(records: Sequence[RequestRecord]) -> Summary:
    """Compute the figures of a set of records.

    Latency percentiles are nearest-rank over every request, failed ones included (a timeout is a
    slow request). The error ratio is failed requests over requests (0 without requests).
    """
    requests = len(records)
    failed = sum(1 for r in records if r.failed)
    latencies = sorted(r.latency_s * 1000 for r in records)
    return Summary(
        requests=requests,
        failed_requests=failed,
        asset_errors=sum(1 for r in records if r.asset_error),
        error_ratio=failed / requests if requests else 0.0,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        longest_outage_s=longest_outage(records),
    )


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def judge(summary: Summary, config: HttpProbeConfig) -> list[str]:
    """List the thresholds of ``config`` that ``summary`` crosses, one line each (empty: none)."""
    reasons = []
    if config.max_failed_requests is not None and summary.failed_requests > config.max_failed_requests:
        reasons.append(
            f"{summary.failed_requests} failed requests > max_failed_requests {config.max_failed_requests}"
        )
    if config.max_error_ratio is not None and summary.error_ratio > config.max_error_ratio:
        reasons.append(
            f"error ratio {_number(summary.error_ratio)} > max_error_ratio {_number(config.max_error_ratio)}"
        )
    if config.max_asset_errors is not None and summary.asset_errors > config.max_asset_errors:
        reasons.append(f"{summary.asset_errors} asset errors > max_asset_errors {config.max_asset_errors}")
    if config.max_p99_ms is not None and summary.p99_ms > config.max_p99_ms:
        reasons.append(f"p99 latency {summary.p99_ms:.1f} ms > max_p99_ms {_number(config.max_p99_ms)}")
    if config.max_outage_s is not None and summary.longest_outage_s > config.max_outage_s:
        reasons.append(
            f"longest outage {summary.longest_outage_s:.3f} s > max_outage_s {_number(config.max_outage_s)}"
        )
    return reasons


def outcome(summary: Summary, config: HttpProbeConfig) -> tuple[str, list[str]]:
    """Decide a measurement or the verdict: ``"failed"``, ``"inconclusive"`` or ``"passed"``, with reasons.

    Failed past a threshold, inconclusive below ``min_requests``, passed otherwise.
    """
    reasons = judge(summary, config)
    if reasons:
        return "failed", reasons
    if summary.requests < config.min_requests:
        return "inconclusive", [f"{summary.requests} requests < min_requests {config.min_requests}"]
    return "passed", []


_MEASUREMENT_STATUS = {
    "failed": MeasurementStatus.FAILED,
    "inconclusive": MeasurementStatus.INCONCLUSIVE,
    "passed": MeasurementStatus.SUCCESSFUL,
}
_VERDICT_STATUS = {
    "failed": VerdictStatus.FAILED,
    "inconclusive": VerdictStatus.INCONCLUSIVE,
    "passed": VerdictStatus.PASSED,
}


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


# --- traffic ---------------------------------------------------------------------------------


class _RateLimiter:
    """Paces request starts to ``rps`` across all clients of one event loop, without bursts."""

    def __init__(self, rps: float) -> None:
        self._interval = 1.0 / rps
        self._next = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def _without_credentials(url: str) -> str:
    try:
        return str(yarl.URL(url).with_user(None))
    except ValueError:
        return "<invalid url>"


class _Traffic:
    """The clients, their sessions and the loop they run in (all inside the traffic thread)."""

    def __init__(self, config: HttpProbeConfig, url: str, record: Callable[[RequestRecord], None]) -> None:
        self._config = config
        self._page_url = yarl.URL(url).join(yarl.URL(config.path))
        self._record = record
        self._limiter = _RateLimiter(config.rps)
        self._stopping: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except Exception:
            logger.exception("http probe traffic stopped by an unexpected error")
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def request_stop(self) -> None:
        loop, stopping = self.loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopping.set)

    async def _main(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._limiter = _RateLimiter(self._config.rps)
        headers = {name: secret.reveal() for name, secret in self._config.headers.items()}
        sessions = [
            aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout),
            )
            for _ in range(self._config.clients)
        ]
        tasks = [
            asyncio.create_task(self._client(index, session), name=f"zdu-http-client-{index}")
            for index, session in enumerate(sessions)
        ]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)

    async def _client(self, index: int, session: aiohttp.ClientSession) -> None:
        visit = 0
        session_pages = self._config.session_pages
        while True:
            visit += 1
            session.cookie_jar.clear()
            pages = 0
            while session_pages == 0 or pages < session_pages:
                pages += 1
                try:
                    await self._view_page(index, visit, session)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not silence the client for the rest of the run
                    logger.exception("http probe client %d: unexpected error", index)
                    await asyncio.sleep(1.0)

    async def _view_page(self, index: int, visit: int, session: aiohttp.ClientSession) -> None:
        await self._limiter.acquire()
        page = await self._fetch(session, RequestKind.PAGE, self._page_url, index, visit)
        if page is None:
            return
        final_url, body = page  # after redirects (GitLab's / may send a visitor to /users/sign_in)
        for asset in find_assets(final_url, body.decode("utf-8", errors="replace")):
            await self._limiter.acquire()
            await self._fetch(session, RequestKind.ASSET, asset, index, visit)

    async def _fetch(
        self, session: aiohttp.ClientSession, kind: RequestKind, url: yarl.URL, index: int, visit: int
    ) -> tuple[yarl.URL, bytes] | None:
        """GET ``url`` and record it; the final URL and body of a 2xx answer, else None."""
        started_wall = time.time()
        started = time.monotonic()
        status: int | None = None
        error: ErrorKind | None = None
        version: str | None = None
        page: tuple[yarl.URL, bytes] | None = None
        try:
            async with session.get(url, allow_redirects=True) as response:
                status = response.status
                version = response.headers.get(self._config.version_header)
                content = await response.read()
            if status >= 500:
                error = ErrorKind.HTTP_5XX
            elif status == 404 and kind is RequestKind.ASSET:
                error = ErrorKind.ASSET_404
            elif 200 <= status < 300:
                page = (response.url, content)
        except TimeoutError:
            error = ErrorKind.TIMEOUT
        except (aiohttp.ClientError, OSError) as exc:
            error = ErrorKind.CONNECTION
            logger.debug("http probe: %s %s: %s", kind.value, url.path, type(exc).__name__)
        self._record(
            RequestRecord(
                kind=kind,
                path=url.path,
                started=started,
                finished=time.monotonic(),
                started_wall=started_wall,
                status=status,
                error=error,
                version=version,
                client=index,
                visit=visit,
            )
        )
        return page


# --- the probe -------------------------------------------------------------------------------


class HttpProbe:
    """The ``http`` probe: generated browser-like traffic, judged against :class:`HttpProbeConfig`.

    Implements :class:`zdu.probe.Probe`. ``start`` sends traffic to ``ctx.url`` from a background
    thread, ``measure`` judges the requests completed since the previous call, ``stop`` ends the
    traffic and judges the whole run. :meth:`records` gives every request, for tests and reports.
    """

    def __init__(self, config: HttpProbeConfig | None = None, *, name: str = "http") -> None:
        self._name = name
        self._config = config if config is not None else HttpProbeConfig()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._measured = 0
        self._failing_since: float | None = None
        self._url: str | None = None
        self._traffic: _Traffic | None = None
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._window_started_wall = 0.0
        self._verdict: Verdict | None = None

    def __repr__(self) -> str:
        url = _without_credentials(self._url) if self._url is not None else None
        return f"HttpProbe(name={self._name!r}, url={url!r}, config={self._config!r})"

    @property
    def name(self) -> str:
        """The probe's name, as registered."""
        return self._name

    @property
    def config(self) -> HttpProbeConfig:
        """The probe's configuration."""
        return self._config

    def start(self, ctx: ProbeContext) -> None:
        """Start sending traffic to ``ctx.url`` in the background; returns once the clients run."""
        if self._thread is not None:
            raise RuntimeError(f"probe {self._name} is already started")
        self._url = ctx.url
        self._started_at = time.monotonic()
        self._window_started_wall = time.time()
        traffic = _Traffic(self._config, ctx.url, self._record)
        ready = threading.Event()
        thread = threading.Thread(
            target=traffic.run, args=(ready,), name=f"zdu-probe-{self._name}", daemon=True
        )
        self._traffic, self._thread = traffic, thread
        logger.info(
            "probe %s: sending %g requests/s from %d clients to %s%s",
            self._name,
            self._config.rps,
            self._config.clients,
            _without_credentials(ctx.url),
            self._config.path,
        )
        thread.start()
        ready.wait(timeout=STOP_TIMEOUT_S)

    def _record(self, record: RequestRecord) -> None:
        """Keep a finished request (called from the traffic thread)."""
        with self._lock:
            self._records.append(record)
        if record.failed and self._failing_since is None:
            self._failing_since = record.started
            logger.warning(
                "probe %s: requests failing (%s on %s %s)",
                self._name,
                record.error.value if record.error else "?",
                record.kind.value,
                record.path,
            )
        elif not record.failed and self._failing_since is not None and record.started > self._failing_since:
            logger.warning(
                "probe %s: requests succeed again after %.2f s",
                self._name,
                record.started - self._failing_since,
            )
            self._failing_since = None

    def records(self) -> list[RequestRecord]:
        """Return every request recorded so far (a copy), in order of completion."""
        with self._lock:
            return list(self._records)

    def measure(self) -> Measurement:
        """Judge the requests completed since the previous call (or since ``start``); never blocks."""
        with self._lock:
            window = self._records[self._measured :]
            self._measured = len(self._records)
        started_at, finished_at = self._window_started_wall, time.time()
        self._window_started_wall = finished_at
        summary = summarize(window)
        decision, reasons = outcome(summary, self._config)
        return Measurement(
            probe=self._name,
            status=_MEASUREMENT_STATUS[decision],
            values=summary.values(),
            reasons=tuple(reasons),
            started_at=started_at,
            finished_at=finished_at,
        )

    def stop(self) -> Verdict:
        """Stop the traffic (within a few seconds) and judge the whole run; a second call repeats it.

        The verdict is FAILED when a threshold is crossed, INCONCLUSIVE when the run had fewer than
        ``min_requests`` requests, PASSED otherwise.
        """
        if self._verdict is not None:
            return self._verdict
        duration = time.monotonic() - self._started_at if self._thread is not None else 0.0
        if self._traffic is not None and self._thread is not None:
            self._traffic.request_stop()
            self._thread.join(timeout=STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("probe %s: traffic did not stop within %.0f s", self._name, STOP_TIMEOUT_S)
        records = self.records()
        summary = summarize(records)
        decision, reasons = outcome(summary, self._config)
        status = _VERDICT_STATUS[decision]
        values = summary.values()
        values["achieved_rps"] = round(summary.requests / duration, 3) if duration > 0 else 0.0
        values["duration_s"] = round(duration, 3)
        self._verdict = Verdict(probe=self._name, status=status, values=values, reasons=tuple(reasons))
        logger.info(
            "probe %s: %s; %d requests, %d failed, %d asset errors, longest outage %.3f s",
            self._name,
            status.value,
            summary.requests,
            summary.failed_requests,
            summary.asset_errors,
            summary.longest_outage_s,
        )
        return self._verdict


def run_for(
    ctx: ProbeContext, seconds: float, config: HttpProbeConfig | None = None, *, name: str = "http"
) -> Verdict:
    """Send traffic to ``ctx.url`` for ``seconds`` and return the verdict (blocks meanwhile).

    For a check before a switch of traffic, such as blue-green's verification of the new set on its
    preview URL.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be greater than 0 (got {seconds!r})")
    probe = HttpProbe(config, name=name)
    probe.start(ctx)
    try:
        time.sleep(seconds)
    finally:
        verdict = probe.stop()
    return verdict
