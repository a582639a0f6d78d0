"""The http probe against bad servers (real sockets on loopback): stalls, dropped connections,
forgotten writes, cut downloads, dropped websockets. Every bad server has a healthy control seen by
the same probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest

from zdu.model import MeasurementStatus, Release, Target, VerdictStatus
from zdu.probe import ProbeContext
from zdu_probes import traffic as traffic_module
from zdu_probes.http import (
    ErrorKind,
    HttpProbe,
    HttpProbeConfig,
    RequestKind,
    measure_capacity,
    run_for,
)

from .servers import DemoApp, DroppingServer

API = {"api": 1.0}


def context(url: str) -> ProbeContext:
    target = Target(name="demo", platform="local", version="16.5.0")
    return ProbeContext(
        url=url, target=target, release=Release(version="16.6.0"), from_version=target.version
    )


@pytest.fixture
def app() -> Iterator[DemoApp]:
    demo = DemoApp()
    yield demo
    demo.close()


# --- open loop ---------------------------------------------------------------------------------


def test_a_stall_shows_as_failed_and_slow_requests_at_the_offered_rate(app: DemoApp) -> None:
    rps, stall_s = 150.0, 3.0
    probe = HttpProbe(HttpProbeConfig(rps=rps, mix=API, timeout=1.0, slow_ms=100))
    probe.start(context(app.url))
    time.sleep(1.0)
    before = probe.measure()  # the control: same probe, same server, no stall
    stall_start, stall_end = app.stall(stall_s)
    time.sleep(stall_s + 1.5)
    verdict = probe.stop()
    records = probe.records()

    assert before.status is MeasurementStatus.SUCCESSFUL, before.reasons
    assert before.values["failed_requests"] == 0 and before.values["longest_outage_s"] == 0

    during = [r for r in records if stall_start <= r.started < stall_end]
    # the schedule did not wait for the answers: rps x 3 s were sent during the stall
    assert len(during) == pytest.approx(rps * stall_s, rel=0.05)
    assert all(r.scheduled and r.kind is RequestKind.API for r in during)
    bad = verdict.values["failed_requests"] + verdict.values["slow_requests"]
    assert bad >= 400, verdict.values
    assert {r.error for r in during if r.failed} == {ErrorKind.TIMEOUT}
    assert verdict.values["longest_outage_s"] == pytest.approx(stall_s, abs=0.2)
    assert verdict.values["offered_rps"] == pytest.approx(rps, rel=0.05)
    assert verdict.status is VerdictStatus.FAILED
    # latency counts from the scheduled start: a request due mid-stall and answered at its end waited
    answered = [r for r in during if not r.failed]
    assert answered and all(r.finished >= stall_end - 0.05 for r in answered)


def test_requests_due_beyond_max_in_flight_are_recorded_as_overload(app: DemoApp) -> None:
    rps = 100.0
    probe = HttpProbe(HttpProbeConfig(rps=rps, mix=API, timeout=3.0, max_in_flight=20))
    probe.start(context(app.url))
    time.sleep(0.5)
    stall_start, stall_end = app.stall(1.0)
    time.sleep(2.0)
    verdict = probe.stop()
    during = [r for r in probe.records() if stall_start <= r.started < stall_end]
    overloaded = [r for r in during if r.error is ErrorKind.OVERLOAD]
    assert len(during) == pytest.approx(rps * 1.0, rel=0.05)  # none skipped
    assert len(overloaded) >= 60  # 20 in flight, the rest of the 100 due during the stall
    assert len(during) - len(overloaded) <= 20 + 2
    assert verdict.values["failed_requests"] == len([r for r in probe.records() if r.failed])


def test_the_mix_shares_the_rate_and_poisson_keeps_the_mean(app: DemoApp) -> None:
    verdict = run_for(context(app.url), 2.0, HttpProbeConfig(rps=100, clients=5))
    values = verdict.values
    assert verdict.status is VerdictStatus.PASSED, verdict.reasons
    scheduled = values["page_requests"] + values["api_requests"] + values["write_requests"]
    assert values["page_requests"] == pytest.approx(0.5 * scheduled, abs=1)
    assert values["api_requests"] == pytest.approx(0.3 * scheduled, abs=1)
    assert values["write_requests"] == pytest.approx(0.2 * scheduled, abs=1)
    assert values["asset_requests"] == 2 * values["page_requests"]
    assert values["requests"] == sum(values[f"{k.value}_requests"] for k in RequestKind)

    poisson = run_for(context(app.url), 3.0, HttpProbeConfig(rps=200, mix=API, schedule="poisson")).values
    assert poisson["offered_rps"] == pytest.approx(200, rel=0.15)  # 600 events: sd about 4%
    assert poisson["failed_requests"] == 0


# --- one attempt, one record ---------------------------------------------------------------------


def test_dropped_connections_are_failed_requests_never_retried() -> None:
    dropping, healthy = DroppingServer(drop_every=5), DroppingServer(drop_every=0)
    try:
        config = HttpProbeConfig(rps=400, mix=API, max_failed_requests=None)
        bad = measure_capacity(dropping.url, 400, 3.0, config)
        good = measure_capacity(healthy.url, 400, 3.0, config)
    finally:
        dropping.close()
        healthy.close()
    assert bad.recorded >= 1000
    assert bad.failed / bad.recorded == pytest.approx(0.20, abs=0.03)
    # one connection per attempt, one record per connection: nothing resent behind the probe's back
    assert dropping.connections == bad.recorded
    assert dropping.dropped == bad.failed
    assert bad.offered == pytest.approx(400, rel=0.05)
    assert bad.achieved == pytest.approx(0.8 * bad.offered, rel=0.05)
    # the control: the same probe sees every request succeed when nothing is dropped
    assert good.failed == 0 and good.recorded >= 1000
    assert healthy.connections == good.recorded


def test_a_default_aiohttp_session_would_hide_the_drops() -> None:
    """Why the probe turns the client's retry off: the same server, a default session."""
    dropping = DroppingServer(drop_every=5)

    async def fetch_all() -> int:
        errors = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(100):
                try:
                    async with session.get(dropping.url + "/") as response:
                        await response.read()
                except aiohttp.ClientError:
                    errors += 1
        return errors

    try:
        errors = asyncio.run(fetch_all())
    finally:
        dropping.close()
    assert dropping.dropped >= 20
    assert errors < dropping.dropped  # resent silently: the drops would not be seen


# --- writes ------------------------------------------------------------------------------------


def test_acknowledged_writes_the_server_forgets_are_lost_writes(app: DemoApp) -> None:
    app.forget_every = 7
    probe = HttpProbe(HttpProbeConfig(rps=60, mix={"write": 1.0}))
    probe.start(context(app.url))
    time.sleep(3.0)
    verdict = probe.stop()
    values = verdict.values
    assert len(app.forgotten) >= 20
    assert values["lost_writes"] == len(app.forgotten)
    assert values["writes"] == app.acknowledged and values["failed_writes"] == 0
    assert values["read_back_requests"] > 0 and values["lookup_requests"] == 1
    # the read-backs during the run already caught the ones forgotten more than a second before stop
    seen_missing = {r.key for r in probe.records() if r.error is ErrorKind.MISSING}
    assert seen_missing and seen_missing < app.forgotten
    assert values["failed_requests"] == 0  # a read-back that finds nothing is an answer
    assert verdict.status is VerdictStatus.FAILED
    assert f"{len(app.forgotten)} lost writes > max_lost_writes 0" in verdict.reasons


def test_writes_kept_are_not_lost_and_a_failed_final_read_back_is_inconclusive(app: DemoApp) -> None:
    kept = run_for(context(app.url), 2.0, HttpProbeConfig(rps=50, mix={"write": 1.0}))
    assert kept.status is VerdictStatus.PASSED, kept.reasons
    assert kept.values["writes"] >= 80 and kept.values["lost_writes"] == 0
    assert kept.values["read_back_requests"] >= 40

    app.lookup_status = 503
    config = HttpProbeConfig(rps=50, mix={"write": 1.0}, max_failed_requests=None)
    blind = run_for(context(app.url), 2.0, config)
    assert blind.values["unverified_writes"] == blind.values["writes"] > 0
    assert blind.values["lookup_failed"] == 1
    assert blind.status is VerdictStatus.INCONCLUSIVE
    assert blind.reasons[0].endswith("lost_writes 0 is a lower bound")


# --- long downloads and websockets ---------------------------------------------------------------


def test_cut_streams_are_counted(app: DemoApp) -> None:
    config = HttpProbeConfig(rps=10, mix=API, streams=3, stream_seconds=1.0, timeout=2.0)
    healthy = run_for(context(app.url), 2.0, config)
    assert healthy.status is VerdictStatus.PASSED, healthy.reasons
    assert healthy.values["streams"] >= 5 and healthy.values["cut_streams"] == 0

    app.cut_every, app.cut, app.streams_started = 3, 0, 0
    cut = run_for(context(app.url), 3.0, config)
    assert app.cut >= 2
    assert cut.values["cut_streams"] == app.cut
    assert cut.values["streams"] == app.streams_started
    assert cut.status is VerdictStatus.FAILED


@pytest.mark.parametrize(
    ("mode", "reject_reconnects", "dropped"),
    [("ok", False, 0), ("close", False, 0), ("drop", False, 1), ("silent", False, 1), ("close", True, 1)],
)
def test_websockets_dropped_or_closed_cleanly(
    app: DemoApp, mode: str, reject_reconnects: bool, dropped: int
) -> None:
    app.socket_mode, app.socket_after, app.reject_reconnects = mode, 0.5, reject_reconnects
    config = HttpProbeConfig(rps=10, mix=API, sockets=1, timeout=1.0, max_failed_requests=None)
    verdict = run_for(context(app.url), 2.0, config)
    values = verdict.values
    assert values["dropped_sockets"] == dropped, (mode, values)
    if reject_reconnects:
        assert values["sockets"] == 1 and values["socket_failed"] >= 1
    elif mode == "ok":
        assert values["sockets"] == 1 == app.socket_connections
    else:  # reopened after the server ended it
        assert values["sockets"] == 2 == app.socket_connections
    assert verdict.status is (VerdictStatus.FAILED if dropped else VerdictStatus.PASSED)


# --- the probe itself -----------------------------------------------------------------------------


def test_a_dead_traffic_thread_is_never_a_pass(app: DemoApp, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: object, visitors: object) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("schedule bug")

    monkeypatch.setattr(traffic_module.Traffic, "_schedule", broken)
    probe = HttpProbe(HttpProbeConfig(rps=50, mix=API))
    probe.start(context(app.url))
    time.sleep(0.6)
    measurement = probe.measure()
    verdict = probe.stop()
    assert measurement.status is MeasurementStatus.INCONCLUSIVE
    assert "schedule bug" in measurement.reasons[0]
    assert verdict.status is VerdictStatus.INCONCLUSIVE
    assert verdict.reasons == ("the probe's traffic died: RuntimeError: schedule bug",)


def test_a_client_that_retries_anyway_is_caught_by_the_trace(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The second line of defence: should a future aiohttp resend on its own, every hidden attempt
    is still recorded (as a failed connection), so records and connections still match."""

    with pytest.warns(DeprecationWarning, match="Inheritance class"):

        class RetryingSession(aiohttp.ClientSession):
            @property  # type: ignore[override]
            def _retry_connection(self) -> bool:
                return True

            @_retry_connection.setter
            def _retry_connection(self, value: bool) -> None:
                pass  # ignores the probe's "no retry"

    monkeypatch.setattr(aiohttp, "ClientSession", RetryingSession)
    dropping = DroppingServer(drop_every=5)
    try:
        config = HttpProbeConfig(rps=200, mix=API, max_failed_requests=None)
        seen = measure_capacity(dropping.url, 200, 2.0, config)
    finally:
        dropping.close()
    assert dropping.dropped >= 60
    assert dropping.connections == seen.recorded
    assert seen.failed == dropping.dropped
    assert "the HTTP client resent GET /api/v4/projects/1 on its own" in caplog.text  # it did resend


def test_a_final_read_back_that_goes_wrong_leaves_writes_unverified(
    app: DemoApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object, session: object) -> None:
        raise RuntimeError("lookup bug")

    monkeypatch.setattr(traffic_module.Traffic, "_final_check", broken)
    verdict = run_for(context(app.url), 1.0, HttpProbeConfig(rps=40, mix={"write": 1.0}))
    assert verdict.values["writes"] > 0
    assert verdict.values["unverified_writes"] == verdict.values["writes"]
    assert verdict.status is VerdictStatus.INCONCLUSIVE
