"""The ``http`` probe's records and figures: what one request did, and what a set of them amounts to.

Everything here is a pure function of records (and of the final write check), so the figures can be
checked without a network. The traffic (``traffic.py``) only produces :class:`RequestRecord`; the
probe (``http.py``) only calls :func:`summarize` and :func:`outcome`.

Memory: a record is a small frozen object (about 0.3 KB with its strings). At the default 100
requests/s plus assets and read-backs (about 220 records/s), a ten-minute run keeps some 130 000
records, about 40 MB; runs of minutes are what the probe is for. The acknowledged write keys are
kept as well (one uuid string each) for the final read-back.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from zdu_probes.config import HttpProbeConfig

__all__ = [
    "LATENCY_KINDS",
    "OUTAGE_KINDS",
    "ErrorKind",
    "RequestKind",
    "RequestRecord",
    "Summary",
    "WriteCheck",
    "failure_rate_upper_95",
    "judge",
    "longest_outage",
    "lost_write_keys",
    "outcome",
    "summarize",
]


class RequestKind(enum.Enum):
    """What a request was for."""

    PAGE = "page"
    ASSET = "asset"
    API = "api"
    WRITE = "write"
    READ_BACK = "read_back"
    LOOKUP = "lookup"
    STREAM = "stream"
    SOCKET = "socket"


class ErrorKind(enum.Enum):
    """Why a request went wrong. :attr:`ASSET_404` and :attr:`MISSING` are answers, not failures."""

    CONNECTION = "connection"
    """No answer: refused, reset, or closed before the answer (never retried)."""
    TIMEOUT = "timeout"
    """No complete answer within the timeout (or still unanswered when the run's drain ended)."""
    HTTP_5XX = "http_5xx"
    REJECTED = "rejected"
    """A write answered with a status other than 2xx or 5xx: not acknowledged."""
    OVERLOAD = "overload"
    """Due while ``max_in_flight`` scheduled requests were in flight: not sent, counted as failed."""
    CUT = "cut"
    """A long download that ended before ``Content-Length`` bytes, was reset, or timed out."""
    DROPPED = "dropped"
    """A websocket closed without a close frame, silent longer than the timeout, or not reopened."""
    INTERNAL = "internal"
    """The probe itself went wrong on this request (a bug); logged, and counted as failed."""
    ASSET_404 = "asset_404"
    """A referenced asset that answered 404."""
    MISSING = "missing"
    """A read-back that did not find an acknowledged write (counted in ``lost_writes``)."""


_NOT_FAILURES = frozenset({ErrorKind.ASSET_404, ErrorKind.MISSING})

#: Kinds whose latency makes the percentiles and ``slow_requests`` (streams and sockets last by design;
#: the final lookup is one batch call).
LATENCY_KINDS = frozenset(
    {RequestKind.PAGE, RequestKind.ASSET, RequestKind.API, RequestKind.WRITE, RequestKind.READ_BACK}
)

#: Kinds whose failures make outages (a socket record spans a whole connection; the lookup runs at the end).
OUTAGE_KINDS = LATENCY_KINDS | {RequestKind.STREAM}

#: Kinds that get their own ``<kind>_requests`` and ``<kind>_failed`` figures.
FIGURE_KINDS = tuple(RequestKind)


@attrs.frozen
class RequestRecord:
    """One attempt the probe made, as it went (exactly one record per attempt).

    :ivar kind: what it was for.
    :ivar path: the URL path requested.
    :ivar started: when it was due (``time.monotonic()``): the scheduled start for a scheduled
        request, so that latency includes any wait for the client (no coordinated omission).
    :ivar finished: when it ended (``time.monotonic()``); for a websocket, when the connection ended.
    :ivar started_wall: ``started`` as ``time.time()``, for reports and correlation with logs.
    :ivar status: the HTTP status, or None when no response came.
    :ivar error: why it went wrong, or None.
    :ivar version: the value of the configured version header in the response, when present.
    :ivar client: which visitor sent it (0-based).
    :ivar visit: which visit of that visitor (1-based; a visit ends after ``session_pages`` pages).
    :ivar scheduled: whether the schedule started it (pages, API reads, writes, streams), rather than a
        page (assets), an acknowledged write (read-backs, lookups) or a held websocket.
    :ivar key: the write's key (writes and read-backs).
    :ivar reconnect: a websocket connection attempt right after a clean close by the server.
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
    scheduled: bool = False
    key: str | None = None
    reconnect: bool = False

    @property
    def latency_s(self) -> float:
        """Seconds from the (scheduled) start to the end (to the error, for a failed request)."""
        return self.finished - self.started

    @property
    def failed(self) -> bool:
        """No usable answer: every error but an asset 404 and a read-back that found nothing."""
        return self.error is not None and self.error not in _NOT_FAILURES

    @property
    def asset_error(self) -> bool:
        """A referenced asset that answered 404."""
        return self.error is ErrorKind.ASSET_404

    @property
    def acknowledged(self) -> bool:
        """A write the server acknowledged (2xx)."""
        return self.kind is RequestKind.WRITE and self.status is not None and 200 <= self.status < 300


@attrs.frozen
class WriteCheck:
    """The final read-back of every acknowledged write (through ``lookup_path``, at stop).

    :ivar checked: acknowledged writes the lookups answered for.
    :ivar missing: keys of acknowledged writes the lookups did not find.
    :ivar unverified: acknowledged writes whose lookup failed: nobody knows whether they are lost.
    """

    checked: int = 0
    missing: frozenset[str] = frozenset()
    unverified: int = 0


# --- pure figures ----------------------------------------------------------------------------


def _percentile(ordered: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values; 0 when there are none."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def longest_outage(records: Iterable[RequestRecord]) -> float:
    """Return the longest outage in seconds: the longest time the service failed one kind of request.

    For each kind of :data:`OUTAGE_KINDS` separately, records are taken in order of (scheduled)
    start. An outage is a run of consecutive failed records of that kind; it lasts from the start of
    its first failure to the *end* of the first successful record of the same kind that follows (the
    moment the service is seen answering that kind again), or, when no success follows, to the
    latest end of its failures. The figure is the longest outage of any kind. A success of another
    kind does not end an outage (a site whose writes all fail while pages load is down for writes),
    and an answered request ends it only when it comes back (a request that waited through a stall
    and was answered when the stall ended closes the outage then, not when it was sent). Asset 404s
    and read-backs that found nothing are answers: they end outages.
    """
    by_kind: dict[RequestKind, list[RequestRecord]] = {}
    for record in records:
        if record.kind in OUTAGE_KINDS:
            by_kind.setdefault(record.kind, []).append(record)
    longest = 0.0
    for kind_records in by_kind.values():
        outage_start: float | None = None
        last_failure_end = 0.0
        for record in sorted(kind_records, key=lambda r: r.started):
            if record.failed:
                if outage_start is None:
                    outage_start, last_failure_end = record.started, record.finished
                else:
                    last_failure_end = max(last_failure_end, record.finished)
            elif outage_start is not None:
                longest = max(longest, record.finished - outage_start)
                outage_start = None
        if outage_start is not None:
            longest = max(longest, last_failure_end - outage_start)
    return longest


#: One-sided 95% normal quantile, for the Wilson bound.
_Z95 = 1.6448536269514722


def failure_rate_upper_95(failed: int, requests: int) -> float:
    """Return an upper 95% confidence bound of the true failure rate, from ``failed`` of ``requests``.

    With no failure it is the exact (Clopper-Pearson) one-sided bound ``1 - 0.05 ** (1 / N)``, about
    ``3 / N`` (the "rule of three"): 0 failures in 1000 requests still allows a rate up to 0.3%.
    With failures it is the one-sided Wilson score upper bound (z = 1.645), which stays within [0, 1]
    and is close to Clopper-Pearson for the counts the probe sees. 1 when there are no requests.
    """
    if requests <= 0:
        return 1.0
    if failed <= 0:
        return float(1.0 - 0.05 ** (1.0 / requests))
    n, p, z = requests, min(failed, requests) / requests, _Z95
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def lost_write_keys(records: Iterable[RequestRecord], final: WriteCheck | None = None) -> set[str]:
    """Return the keys of lost writes.

    The rule: an acknowledged write is lost when any read-back of it did not find it -- the one made
    a second or so after the acknowledgement (a :attr:`ErrorKind.MISSING` read-back record) or the
    final lookup at stop (``final.missing``). A write that is missing once and found later still
    counts: a user who wrote, was told it was saved and then did not see it, saw it lost. A read-back
    that failed (no answer) proves nothing either way; a write checked by nothing that answered is
    counted in ``unverified_writes`` instead.
    """
    keys = {
        r.key for r in records if r.kind is RequestKind.READ_BACK and r.error is ErrorKind.MISSING and r.key
    }
    if final is not None:
        keys |= final.missing
    return keys


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
    slow_requests: int = 0
    writes: int = 0
    failed_writes: int = 0
    lost_writes: int = 0
    unverified_writes: int = 0
    streams: int = 0
    cut_streams: int = 0
    sockets: int = 0
    dropped_sockets: int = 0
    offered_rps: float = 0.0
    achieved_rps: float = 0.0
    failure_rate_upper_95: float = 1.0
    duration_s: float = 0.0
    per_kind: Mapping[str, tuple[int, int]] = attrs.field(factory=dict)
    first_failure_at: float = 0.0

    def values(self) -> dict[str, float]:
        """Return the figures as a Measurement's or Verdict's ``values`` (numbers only)."""
        values: dict[str, float] = {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "asset_errors": self.asset_errors,
            "error_ratio": round(self.error_ratio, 6),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "longest_outage_s": round(self.longest_outage_s, 3),
            "slow_requests": self.slow_requests,
            "writes": self.writes,
            "failed_writes": self.failed_writes,
            "lost_writes": self.lost_writes,
            "unverified_writes": self.unverified_writes,
            "streams": self.streams,
            "cut_streams": self.cut_streams,
            "sockets": self.sockets,
            "dropped_sockets": self.dropped_sockets,
            "offered_rps": round(self.offered_rps, 3),
            "achieved_rps": round(self.achieved_rps, 3),
            "failure_rate_upper_95": round(self.failure_rate_upper_95, 6),
            "duration_s": round(self.duration_s, 3),
            "first_failure_at": round(self.first_failure_at, 3),
        }
        for kind, (requests, failed) in self.per_kind.items():
            values[f"{kind}_requests"] = requests
            values[f"{kind}_failed"] = failed
        return values


def summarize(
    records: Sequence[RequestRecord],
    *,
    duration_s: float = 0.0,
    slow_ms: float = 1000.0,
    final: WriteCheck | None = None,
) -> Summary:
    """Compute the figures of a set of records over ``duration_s`` seconds.

    - ``requests``/``failed_requests``: every record of every kind (pages, assets, API reads, writes,
      read-backs, lookups, streams, websocket connections) and those that failed.
    - ``p50_ms``/``p99_ms``: nearest-rank over :data:`LATENCY_KINDS`, failed ones included (a timeout
      is a slow request), from the scheduled start. ``slow_requests``: answered (not failed) records
      of those kinds slower than ``slow_ms``.
    - ``writes``/``failed_writes``: write attempts, and those not acknowledged. ``lost_writes``: see
      :func:`lost_write_keys`; ``unverified_writes``: acknowledged writes the final lookup could not
      check (``final.unverified``; 0 without a final check).
    - ``streams``: long downloads completed or cut; ``cut_streams``: those cut (the server answered,
      then the download ended short, was reset or timed out). A stream that got no answer at all, or
      a 5xx, is a failed request, neither completed nor cut.
    - ``sockets``: websocket connections opened; ``dropped_sockets``: connections that ended without
      a close frame or went silent (:attr:`ErrorKind.DROPPED`), plus failed reconnects right after a
      clean close.
    - ``offered_rps``: scheduled attempts (overloaded ones included) per second of ``duration_s``;
      ``achieved_rps``: scheduled attempts answered without failure per second.
    - ``failure_rate_upper_95``: :func:`failure_rate_upper_95` of failed requests over requests.
    - ``first_failure_at``: when the first failed request ended (``time.time()``; 0 without one), for
      the time from a user's first failure to the gate's decision (the demo's ``detect_s``).
    """
    requests = len(records)
    failed = sum(1 for r in records if r.failed)
    timed = [r for r in records if r.kind in LATENCY_KINDS]
    latencies = sorted(r.latency_s * 1000 for r in timed)
    per_kind: dict[str, tuple[int, int]] = {}
    for kind in FIGURE_KINDS:
        of_kind = [r for r in records if r.kind is kind]
        per_kind[kind.value] = (len(of_kind), sum(1 for r in of_kind if r.failed))
    writes = [r for r in records if r.kind is RequestKind.WRITE]
    streams = [r for r in records if r.kind is RequestKind.STREAM]
    sockets = [r for r in records if r.kind is RequestKind.SOCKET]
    scheduled = [r for r in records if r.scheduled]
    return Summary(
        requests=requests,
        failed_requests=failed,
        asset_errors=sum(1 for r in records if r.asset_error),
        error_ratio=failed / requests if requests else 0.0,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        longest_outage_s=longest_outage(records),
        slow_requests=sum(1 for r in timed if not r.failed and r.latency_s * 1000 > slow_ms),
        writes=len(writes),
        failed_writes=sum(1 for r in writes if r.failed),
        lost_writes=len(lost_write_keys(records, final)),
        unverified_writes=final.unverified if final is not None else 0,
        streams=sum(1 for r in streams if r.error in (None, ErrorKind.CUT)),
        cut_streams=sum(1 for r in streams if r.error is ErrorKind.CUT),
        sockets=sum(1 for r in sockets if r.status == 101),
        dropped_sockets=sum(1 for r in sockets if r.error is ErrorKind.DROPPED or (r.reconnect and r.failed)),
        offered_rps=len(scheduled) / duration_s if duration_s > 0 else 0.0,
        achieved_rps=sum(1 for r in scheduled if not r.failed) / duration_s if duration_s > 0 else 0.0,
        failure_rate_upper_95=failure_rate_upper_95(failed, requests),
        duration_s=duration_s,
        per_kind=per_kind,
        first_failure_at=min(
            (r.started_wall + r.latency_s for r in records if r.failed and r.started_wall), default=0.0
        ),
    )


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def judge(summary: Summary, config: HttpProbeConfig) -> list[str]:
    """List the thresholds of ``config`` that ``summary`` crosses, one line each (empty: none)."""
    counts = (
        (summary.failed_requests, config.max_failed_requests, "failed requests", "max_failed_requests"),
        (summary.asset_errors, config.max_asset_errors, "asset errors", "max_asset_errors"),
        (summary.lost_writes, config.max_lost_writes, "lost writes", "max_lost_writes"),
        (summary.cut_streams, config.max_cut_streams, "cut streams", "max_cut_streams"),
        (summary.dropped_sockets, config.max_dropped_sockets, "dropped websockets", "max_dropped_sockets"),
        (summary.slow_requests, config.max_slow_requests, "slow requests", "max_slow_requests"),
    )
    reasons = [
        f"{value} {what} > {option} {limit}"
        for value, limit, what, option in counts
        if limit is not None and value > limit
    ]
    if config.max_error_ratio is not None and summary.error_ratio > config.max_error_ratio:
        reasons.append(
            f"error ratio {_number(summary.error_ratio)} > max_error_ratio {_number(config.max_error_ratio)}"
        )
    if config.max_p99_ms is not None and summary.p99_ms > config.max_p99_ms:
        reasons.append(f"p99 latency {summary.p99_ms:.1f} ms > max_p99_ms {_number(config.max_p99_ms)}")
    if config.max_outage_s is not None and summary.longest_outage_s > config.max_outage_s:
        reasons.append(
            f"longest outage {summary.longest_outage_s:.3f} s > max_outage_s {_number(config.max_outage_s)}"
        )
    return reasons


def outcome(
    summary: Summary, config: HttpProbeConfig, *, trouble: str | None = None
) -> tuple[str, list[str]]:
    """Decide a measurement or the verdict: ``"failed"``, ``"inconclusive"`` or ``"passed"``, with reasons.

    Failed past a threshold; otherwise inconclusive when the probe itself is in ``trouble`` (its
    traffic died, say), when there were fewer than ``min_requests`` requests, or when acknowledged
    writes could not be read back at the end (``lost_writes`` is then only a lower bound); passed
    otherwise. A dead probe never passes.
    """
    crossed = judge(summary, config)
    doubts = [trouble] if trouble is not None else []
    if summary.unverified_writes:
        doubts.append(
            f"{summary.unverified_writes} acknowledged writes could not be read back at the end:"
            f" lost_writes {summary.lost_writes} is a lower bound"
        )
    if crossed:
        return "failed", crossed + doubts
    if trouble is None and summary.requests < config.min_requests:
        doubts.append(f"{summary.requests} requests < min_requests {config.min_requests}")
    if doubts:
        return "inconclusive", doubts
    return "passed", []
