"""The ``http`` probe: open-loop, browser-like traffic against the Target, judged against an SLO.

While an upgrade runs, the probe plays a crowd: visitors loading pages and their assets, API reads,
writes that are read back, long downloads and held websockets (``traffic.py``). Request starts follow
a schedule that never waits for answers, every attempt is sent once and recorded once, and latency
counts from the scheduled start, so a stall or a dropped connection shows up as the failures and
slow requests real users would have had. ``figures.py`` turns the records into figures and judges
them against the thresholds of :class:`HttpProbeConfig` (``config.py``); see docs/probes.md for what
the probe counts and what it cannot see.

The traffic runs in a background thread with its own asyncio loop; :meth:`HttpProbe.measure` only
reads what was recorded, so it never waits on the network. A probe whose traffic died never passes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import NamedTuple

import attrs
import yarl

from zdu.plugins import Measurement, MeasurementStatus, ProbeContext, Release, Target, Verdict, VerdictStatus
from zdu_probes.config import HttpProbeConfig
from zdu_probes.figures import (
    ErrorKind,
    RequestKind,
    RequestRecord,
    Summary,
    WriteCheck,
    failure_rate_upper_95,
    judge,
    longest_outage,
    lost_write_keys,
    outcome,
    summarize,
)
from zdu_probes.traffic import Traffic, find_assets

__all__ = [
    "Capacity",
    "ErrorKind",
    "HttpProbe",
    "HttpProbeConfig",
    "RequestKind",
    "RequestRecord",
    "Summary",
    "WriteCheck",
    "failure_rate_upper_95",
    "find_assets",
    "judge",
    "longest_outage",
    "lost_write_keys",
    "measure_capacity",
    "outcome",
    "run_for",
    "summarize",
]

logger = logging.getLogger("zdu.probes.http")

#: How long :meth:`HttpProbe.start` waits for the traffic to run.
START_TIMEOUT_S = 5.0

#: Seconds between two warnings that requests fail; shorter runs of failures are not logged as over.
WARNING_INTERVAL_S = 5.0

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


def _without_credentials(url: str) -> str:
    try:
        return str(yarl.URL(url).with_user(None))
    except ValueError:
        return "<invalid url>"


# --- the probe -------------------------------------------------------------------------------


class HttpProbe:
    """The ``http`` probe: generated open-loop traffic, judged against :class:`HttpProbeConfig`.

    Implements :class:`zdu.probe.Probe`. ``start`` sends traffic to ``ctx.url`` from a background
    thread, ``measure`` judges the requests completed since the previous call, ``stop`` ends the
    traffic (waiting for the requests in flight and reading the writes back) and judges the whole
    run. :meth:`records` gives every request, for tests and reports.
    """

    def __init__(self, config: HttpProbeConfig | None = None, *, name: str = "http") -> None:
        self._name = name
        self._config = config if config is not None else HttpProbeConfig()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._measured = 0
        self._failing_since: float | None = None
        self._last_warning = -WARNING_INTERVAL_S
        self._url: str | None = None
        self._traffic: Traffic | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._started_at = 0.0
        self._window_started = 0.0
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
        """Start sending traffic to ``ctx.url`` in the background; returns once the schedule runs."""
        if self._thread is not None:
            raise RuntimeError(f"probe {self._name} is already started")
        self._url = ctx.url
        self._started_at = self._window_started = time.monotonic()
        self._window_started_wall = time.time()
        traffic = Traffic(self._config, ctx.url, self._record)
        ready = threading.Event()
        thread = threading.Thread(
            target=traffic.run, args=(ready,), name=f"zdu-probe-{self._name}", daemon=True
        )
        self._traffic, self._thread = traffic, thread
        mix = ", ".join(f"{kind} {share:g}" for kind, share in self._config.mix.items() if share)
        logger.info(
            "probe %s: %g requests/s (%s) from %d visitors, %d streams, %d websockets to %s",
            self._name,
            self._config.rps,
            mix,
            self._config.clients,
            self._config.streams,
            self._config.sockets,
            _without_credentials(ctx.url),
        )
        thread.start()
        ready.wait(timeout=START_TIMEOUT_S)

    def _record(self, record: RequestRecord) -> None:
        """Keep a finished request (called from the traffic thread)."""
        with self._lock:
            self._records.append(record)
        # Log the start and the end of a run of failures, but not the blips of a flaky service.
        if record.failed and self._failing_since is None:
            self._failing_since = record.started
            if record.started - self._last_warning >= WARNING_INTERVAL_S:
                self._last_warning = record.started
                logger.warning(
                    "probe %s: requests failing (%s on %s %s)",
                    self._name,
                    record.error.value if record.error else "?",
                    record.kind.value,
                    record.path,
                )
        elif not record.failed and self._failing_since is not None and record.started > self._failing_since:
            if record.finished - self._failing_since >= WARNING_INTERVAL_S:
                logger.warning(
                    "probe %s: requests succeed again after %.2f s",
                    self._name,
                    record.finished - self._failing_since,
                )
            self._failing_since = None

    def records(self) -> list[RequestRecord]:
        """Return every request recorded so far (a copy), in order of completion."""
        with self._lock:
            return list(self._records)

    def _trouble(self) -> str | None:
        """Why the probe's own figures cannot be trusted (its traffic died), or None."""
        traffic, thread = self._traffic, self._thread
        if traffic is None or thread is None:
            return "the probe was not started"
        if traffic.error is not None:
            return traffic.error
        if not thread.is_alive() and not self._stop_requested:
            return "the probe's traffic thread ended on its own"
        return None

    def measure(self) -> Measurement:
        """Judge the requests completed since the previous call (or since ``start``); never blocks.

        INCONCLUSIVE (with the reason) when the traffic died, unless a threshold is already crossed.
        """
        with self._lock:
            window = self._records[self._measured :]
            self._measured = len(self._records)
        now, finished_at = time.monotonic(), time.time()
        started_at = self._window_started_wall
        duration = now - self._window_started
        self._window_started, self._window_started_wall = now, finished_at
        summary = summarize(window, duration_s=duration, slow_ms=self._config.slow_ms)
        decision, reasons = outcome(summary, self._config, trouble=self._trouble())
        return Measurement(
            probe=self._name,
            status=_MEASUREMENT_STATUS[decision],
            values=summary.values(),
            reasons=tuple(reasons),
            started_at=started_at,
            finished_at=finished_at,
        )

    def stop(self) -> Verdict:
        """Stop the traffic and judge the whole run; a second call repeats the verdict.

        Stopping waits for the requests in flight (each within its timeout; the ones still running
        after that are recorded as timed out) and reads every acknowledged write back. The verdict is
        FAILED when a threshold is crossed; INCONCLUSIVE when the traffic died or did not stop, when
        the run had fewer than ``min_requests`` requests or when the final read-back of the writes
        failed; PASSED otherwise.
        """
        if self._verdict is not None:
            return self._verdict
        ended = time.monotonic()
        duration = ended - self._started_at if self._thread is not None else 0.0
        trouble = self._trouble()
        final: WriteCheck | None = None
        if self._traffic is not None and self._thread is not None:
            self._stop_requested = True
            self._traffic.request_stop()
            budget = self._traffic.stop_budget()
            self._thread.join(timeout=budget)
            if self._thread.is_alive():
                trouble = trouble or f"the probe's traffic did not stop within {budget:.0f} s"
                logger.warning("probe %s: %s", self._name, trouble)
            else:
                trouble = trouble or self._traffic.error
                final = self._traffic.final
        summary = summarize(self.records(), duration_s=duration, slow_ms=self._config.slow_ms, final=final)
        decision, reasons = outcome(summary, self._config, trouble=trouble)
        status = _VERDICT_STATUS[decision]
        self._verdict = Verdict(
            probe=self._name, status=status, values=summary.values(), reasons=tuple(reasons)
        )
        logger.info(
            "probe %s: %s; %d requests, %d failed, %d asset errors, %d lost writes, longest outage %.3f s",
            self._name,
            status.value,
            summary.requests,
            summary.failed_requests,
            summary.asset_errors,
            summary.lost_writes,
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


class Capacity(NamedTuple):
    """What :func:`measure_capacity` saw: rates per second over the run, and counts."""

    offered: float
    """Scheduled requests per second (the rate asked for, as the schedule kept it)."""
    achieved: float
    """Scheduled requests answered without failure per second."""
    recorded: int
    """Every request recorded (assets, read-backs and lookups included)."""
    failed: int
    """Failed requests among them."""


def measure_capacity(url: str, rps: float, seconds: float, config: HttpProbeConfig | None = None) -> Capacity:
    """Run the probe against ``url`` at ``rps`` for ``seconds`` and report offered vs achieved rates.

    For benchmarks: raise ``rps`` until ``achieved`` falls behind ``offered`` (or ``failed`` grows)
    to find what a deployment -- or the probe's own machine -- can take. ``config`` gives the other
    options (its ``rps`` is replaced); thresholds do not matter here.
    """
    base = config if config is not None else HttpProbeConfig()
    probe_config = attrs.evolve(base, rps=rps)
    target = Target(name="capacity", platform="none", version="0.0.0")
    ctx = ProbeContext(url=url, target=target, release=Release(version="0.0.0"), from_version=target.version)
    verdict = run_for(ctx, seconds, probe_config, name="capacity")
    values = verdict.values
    return Capacity(
        offered=float(values.get("offered_rps", 0.0)),
        achieved=float(values.get("achieved_rps", 0.0)),
        recorded=int(values.get("requests", 0)),
        failed=int(values.get("failed_requests", 0)),
    )
