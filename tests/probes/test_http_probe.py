"""The http probe's pages and assets, against a real HTTP server on loopback with failure switches.

The other kinds of traffic and the bad servers are in test_http_traffic.py; the pure figures in
test_http_figures.py."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yarl

from zdu.model import MeasurementStatus, Release, Target, VerdictStatus
from zdu.probe import Probe, ProbeContext
from zdu.secret import Secret
from zdu_probes.http import (
    ErrorKind,
    HttpProbe,
    HttpProbeConfig,
    RequestKind,
    RequestRecord,
    find_assets,
    judge,
    longest_outage,
    run_for,
    summarize,
)

SCRIPT = "/assets/application-3f2a9c.js"
STYLE = "/assets/application-77be01.css"
PAGE = f"""<!doctype html>
<html><head>
<link rel="stylesheet" href="{STYLE}">
<script src="{SCRIPT}" defer></script>
</head><body><a href="/about">about</a><img src='{SCRIPT}'></body></html>
""".encode()


class DemoServer:
    """A page referencing two assets, served by http.server on loopback, with failure switches.

    Each response carries ``X-Seen-Visitor``: the visitor cookie the request came with (or ``none``);
    a request without one is given a new visitor cookie.
    """

    def __init__(self) -> None:
        self.page_status = 200
        self.missing_assets: set[str] = set()
        self.hang = False
        self.release = threading.Event()
        self.tokens: list[str | None] = []
        self._visitors = itertools.count(1)
        self._lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server

    def close(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def new_visitor(self) -> str:
        with self._lock:
            return str(next(self._visitors))


def _handler(demo: DemoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            demo.tokens.append(self.headers.get("Private-Token"))
            if demo.hang:
                demo.release.wait(10)
            seen = "none"
            for part in (self.headers.get("Cookie") or "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "visitor":
                    seen = value
            path = self.path.split("?")[0]
            if path.startswith("/assets/"):
                status, body = (404, b"not found") if path in demo.missing_assets else (200, b"x" * 200)
            elif path == "/":
                status, body = demo.page_status, PAGE if demo.page_status == 200 else b"oops"
            else:
                status, body = 404, b"not found"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Demo-Version", "16.5.0")
            self.send_header("X-Seen-Visitor", seen)
            if seen == "none":
                self.send_header("Set-Cookie", f"visitor={demo.new_visitor()}; Path=/")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[DemoServer]:
    demo = DemoServer()
    yield demo
    demo.release.set()
    demo.close()


#: Page views only: this server has pages and assets, no API.
PAGES = {"page": 1.0}


def context(url: str) -> ProbeContext:
    return ProbeContext(
        url=url,
        target=Target(name="demo", platform="local", version="16.5.0"),
        release=Release(version="16.6.0"),
        from_version=Target(name="demo", platform="local", version="16.5.0").version,
    )


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rps", 0),
        ("rps", -5.0),
        ("clients", 0),
        ("session_pages", -1),
        ("timeout", 0),
        ("path", "index.html"),
        ("max_failed_requests", -1),
        ("max_error_ratio", 1.5),
        ("max_p99_ms", -1.0),
        ("min_requests", -1),
        ("version_header", "bad header"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must .*\(got {value!r}\)$"):
        HttpProbeConfig(**{field: value})  # type: ignore[arg-type]


def test_config_wraps_plain_header_values_in_secrets() -> None:
    config = HttpProbeConfig(headers={"Private-Token": "glpat-abc"})
    assert isinstance(config.headers["Private-Token"], Secret)
    assert config.headers["Private-Token"].reveal() == "glpat-abc"
    assert "glpat-abc" not in repr(config)


def test_probe_implements_the_protocol() -> None:
    assert isinstance(HttpProbe(), Probe)


# --- pure figures ------------------------------------------------------------------------------


def rec(
    started: float,
    finished: float | None = None,
    error: ErrorKind | None = None,
    kind: RequestKind = RequestKind.PAGE,
) -> RequestRecord:
    return RequestRecord(
        kind=kind,
        path="/",
        started=started,
        finished=started + 0.01 if finished is None else finished,
        status=None if error in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT) else 200,
        error=error,
    )


def test_outage_runs_from_first_failure_to_next_success() -> None:
    records = [
        rec(0.0),
        rec(1.0, 1.1, ErrorKind.CONNECTION),
        rec(1.5, 1.6, ErrorKind.HTTP_5XX),
        rec(1.7, 1.8, ErrorKind.TIMEOUT),
        rec(2.0),  # recovery, answered at 2.01: the outage is 1.0 .. 2.01
        rec(3.0, 3.2, ErrorKind.CONNECTION),
        rec(3.1, 3.5, ErrorKind.CONNECTION),  # trailing failures: 3.0 .. 3.5
    ]
    assert longest_outage(records) == pytest.approx(1.01)
    assert longest_outage(records[:4]) == pytest.approx(0.8)  # no success after: to the last end
    assert longest_outage(list(reversed(records))) == pytest.approx(1.01)  # order of completion irrelevant


def test_asset_404_is_not_an_outage_and_not_a_failure() -> None:
    records = [
        rec(0.0, 0.1, ErrorKind.ASSET_404, RequestKind.ASSET),
        rec(1.0, 1.1, ErrorKind.CONNECTION),
        rec(1.2, 1.3, ErrorKind.ASSET_404, RequestKind.ASSET),  # an answer, but of another kind
        rec(2.0, 2.1, ErrorKind.ASSET_404, RequestKind.ASSET),
        rec(2.5, 2.6, ErrorKind.ASSET_404),  # a page 404 would be an answer: ends the outage
    ]
    summary = summarize(records)
    assert summary.longest_outage_s == pytest.approx(1.6)
    assert summary.failed_requests == 1
    assert summary.asset_errors == 4
    assert summary.error_ratio == pytest.approx(0.2)


def test_a_concurrent_success_interrupts_an_outage() -> None:
    # a slow timeout started at 1.0; another request started at 1.5 was answered at 1.6
    records = [rec(1.0, 6.0, ErrorKind.TIMEOUT), rec(1.5, 1.6), rec(2.0, 2.1, ErrorKind.CONNECTION)]
    assert longest_outage(records) == pytest.approx(0.6)


def test_percentiles_are_nearest_rank_over_all_requests() -> None:
    records = [rec(float(i), i + ms / 1000) for i, ms in enumerate(range(1, 101))]
    summary = summarize(records)
    assert summary.p50_ms == pytest.approx(50)
    assert summary.p99_ms == pytest.approx(99)
    assert summarize(records[:1]).p99_ms == pytest.approx(1)


def test_summary_of_nothing_is_zero() -> None:
    values = summarize([]).values()
    assert values.pop("failure_rate_upper_95") == 1  # nothing seen: nothing ruled out
    assert set(values.values()) == {0}
    assert all(isinstance(v, int | float) for v in values.values())


def test_judge_names_each_threshold_and_value() -> None:
    records = [rec(0.0, 0.9), *(rec(1.0 + i, 1.0 + i + 0.01, ErrorKind.CONNECTION) for i in range(3))]
    records.append(rec(5.0, 5.01, ErrorKind.ASSET_404, RequestKind.ASSET))
    config = HttpProbeConfig(max_error_ratio=0.5, max_p99_ms=500, max_outage_s=1, max_slow_requests=0)
    assert judge(summarize(records, slow_ms=800), config) == [
        "3 failed requests > max_failed_requests 0",
        "1 asset errors > max_asset_errors 0",
        "1 slow requests > max_slow_requests 0",
        "error ratio 0.6 > max_error_ratio 0.5",
        "p99 latency 900.0 ms > max_p99_ms 500",
        "longest outage 2.010 s > max_outage_s 1",  # pages 1.0 .. 3.01: an asset answer does not end it
    ]
    unlimited = HttpProbeConfig(max_failed_requests=None, max_asset_errors=None)
    assert judge(summarize(records), unlimited) == []


def test_find_assets_resolves_fingerprinted_references_once() -> None:
    html = """<script src="/assets/a-1.js"></script><link href='assets/b-2.css'>
    <script src="http://127.0.0.1:9/assets/a-1.js?x=1&amp;y=2"></script><a href="/about">
    <img src="/assets/a-1.js"><img src="https://cdn.example/uploads/x.png">"""
    found = find_assets(yarl.URL("http://127.0.0.1:9/"), html)
    assert [str(u) for u in found] == [
        "http://127.0.0.1:9/assets/a-1.js",
        "http://127.0.0.1:9/assets/b-2.css",
        "http://127.0.0.1:9/assets/a-1.js?x=1&y=2",
    ]


def test_measure_and_stop_without_traffic_are_inconclusive() -> None:
    probe = HttpProbe(HttpProbeConfig(min_requests=5))
    measurement = probe.measure()
    assert measurement.status is MeasurementStatus.INCONCLUSIVE
    assert measurement.reasons == ("the probe was not started",)
    verdict = probe.stop()
    assert verdict.status is VerdictStatus.INCONCLUSIVE
    assert verdict.reasons == ("the probe was not started",)


# --- real traffic ------------------------------------------------------------------------------


def test_healthy_server_passes_at_the_configured_rate(server: DemoServer) -> None:
    rps, seconds = 60.0, 3.0
    verdict = run_for(context(server.url), seconds, HttpProbeConfig(rps=rps, clients=4, mix=PAGES))
    assert verdict.status is VerdictStatus.PASSED, verdict.reasons
    assert verdict.ok
    values = verdict.values
    assert values["failed_requests"] == 0
    assert values["asset_errors"] == 0
    assert values["page_requests"] >= 0.9 * rps * seconds
    assert values["page_requests"] <= rps * values["duration_s"] + 2  # paced, not flooding
    assert values["asset_requests"] == 2 * values["page_requests"]
    assert values["offered_rps"] == pytest.approx(rps, rel=0.05)
    assert values["achieved_rps"] >= 0.9 * rps
    assert values["duration_s"] >= seconds
    for name in ("error_ratio", "longest_outage_s", "p50_ms", "p99_ms"):
        assert name in values


def test_pages_and_their_assets_are_recorded(server: DemoServer) -> None:
    probe = HttpProbe(HttpProbeConfig(rps=40, clients=2, mix=PAGES))
    probe.start(context(server.url))
    time.sleep(0.6)
    probe.stop()
    records = probe.records()
    assert {r.kind for r in records} == {RequestKind.PAGE, RequestKind.ASSET}
    assert {r.path for r in records} == {"/", SCRIPT, STYLE}
    assert all(r.status == 200 and r.error is None and r.version == "16.5.0" for r in records)
    assert all(r.finished >= r.started and r.started_wall > 1e9 for r in records)


def test_stopping_the_server_is_an_outage(server: DemoServer) -> None:
    probe = HttpProbe(HttpProbeConfig(rps=50, clients=4, timeout=1.0, mix=PAGES))
    probe.start(context(server.url))
    time.sleep(0.8)
    healthy = probe.measure()
    server.close()
    time.sleep(1.0)
    down = probe.measure()
    server.start()  # same port
    time.sleep(0.3)
    probe.measure()  # the window of the switch holds both
    time.sleep(0.8)
    recovered = probe.measure()
    verdict = probe.stop()

    assert healthy.status is MeasurementStatus.SUCCESSFUL, healthy.reasons
    assert down.status is MeasurementStatus.FAILED
    assert down.values["failed_requests"] > 0
    assert down.reasons[0].endswith("failed requests > max_failed_requests 0")
    assert recovered.status is MeasurementStatus.SUCCESSFUL, recovered.reasons
    assert recovered.values["requests"] > 0
    assert healthy.finished_at <= down.started_at

    assert verdict.status is VerdictStatus.FAILED
    assert verdict.values["failed_requests"] > 0
    assert 0.5 < verdict.values["longest_outage_s"] < 2.5
    assert {r.error for r in probe.records() if r.failed} == {ErrorKind.CONNECTION}
    assert sum(m.values["requests"] for m in (healthy, down, recovered)) < verdict.values["requests"]


def test_5xx_answers_are_failed_requests(server: DemoServer) -> None:
    server.page_status = 500
    config = HttpProbeConfig(rps=40, clients=2, max_failed_requests=None, max_error_ratio=0.5, mix=PAGES)
    verdict = run_for(context(server.url), 0.8, config)
    assert verdict.status is VerdictStatus.FAILED
    assert verdict.values["requests"] > 0
    assert verdict.values["failed_requests"] == verdict.values["requests"]
    assert verdict.reasons == ("error ratio 1 > max_error_ratio 0.5",)


def test_asset_404_counts_as_asset_error_not_failure(server: DemoServer) -> None:
    server.missing_assets.add(SCRIPT)
    probe = HttpProbe(HttpProbeConfig(rps=40, clients=2, mix=PAGES))
    probe.start(context(server.url))
    time.sleep(0.8)
    verdict = probe.stop()
    assert verdict.values["asset_errors"] > 0
    assert verdict.values["failed_requests"] == 0
    assert verdict.values["longest_outage_s"] == 0
    assert verdict.status is VerdictStatus.FAILED
    assert verdict.reasons[0].endswith("asset errors > max_asset_errors 0")
    errors = [r for r in probe.records() if r.error is not None]
    assert {(r.path, r.status, r.error) for r in errors} == {(SCRIPT, 404, ErrorKind.ASSET_404)}
    # without an asset threshold, the same traffic passes
    assert judge(summarize(probe.records()), HttpProbeConfig(max_asset_errors=None)) == []


def test_each_client_keeps_its_cookies_for_session_pages(server: DemoServer) -> None:
    config = HttpProbeConfig(rps=60, clients=3, session_pages=3, version_header="X-Seen-Visitor", mix=PAGES)
    probe = HttpProbe(config)
    probe.start(context(server.url))
    time.sleep(1.5)
    probe.stop()

    visits: dict[tuple[int, int], list[RequestRecord]] = defaultdict(list)
    for record in sorted(probe.records(), key=lambda r: r.started):
        visits[record.client, record.visit].append(record)
    assert len({client for client, _ in visits}) == 3
    assert max(visit for _, visit in visits) >= 2  # clients come back as new visitors

    visitor_of_visit = {}
    for key, records in visits.items():
        first, rest = records[0], records[1:]
        assert first.kind is RequestKind.PAGE and first.version == "none"  # a new visitor has no cookie
        assert len([r for r in records if r.kind is RequestKind.PAGE]) <= 3
        seen = {r.version for r in rest}
        if rest:
            assert len(seen) == 1 and "none" not in seen  # the cookie it was given comes back
            visitor_of_visit[key] = seen.pop()
    assert len(set(visitor_of_visit.values())) == len(visitor_of_visit)  # one jar per client and visit


def test_secret_headers_are_sent_and_never_shown(
    server: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="zdu.probes.http")
    token = "glpat-s3cr3t-T0KEN"
    config = HttpProbeConfig(rps=40, clients=2, headers={"Private-Token": Secret(token)}, mix=PAGES)
    probe = HttpProbe(config)
    probe.start(context(server.url))
    time.sleep(0.5)
    server.close()  # failures get logged too
    time.sleep(0.3)
    server.start()
    time.sleep(0.3)
    measurement = probe.measure()
    verdict = probe.stop()

    assert token in server.tokens
    assert set(server.tokens) == {token}
    assert "requests failing" in caplog.text
    shown = [repr(probe), repr(config), str(config), repr(verdict), repr(measurement), repr(probe.records())]
    shown.append(caplog.text)
    for text in shown:
        assert token not in text


def test_requests_in_flight_at_stop_are_awaited_and_recorded(server: DemoServer) -> None:
    server.hang = True  # nothing is answered: every page is still in flight at stop
    probe = HttpProbe(HttpProbeConfig(rps=50, clients=5, timeout=1.0, mix=PAGES))
    probe.start(context(server.url))
    time.sleep(0.5)
    began = time.monotonic()
    verdict = probe.stop()
    waited = time.monotonic() - began
    records = probe.records()
    assert 0.4 < waited < 1.0 + 2 * 1.0 + 5  # waited for the timeouts, within the drain bound
    assert len(records) >= 20  # 50/s for 0.5 s: each scheduled page recorded, none dropped
    assert {(r.kind, r.error) for r in records} == {(RequestKind.PAGE, ErrorKind.TIMEOUT)}
    assert verdict.values["requests"] == len(records) == verdict.values["failed_requests"]
    assert verdict.status is VerdictStatus.FAILED
    assert probe.stop() is verdict  # a second stop repeats the verdict


def test_first_failure_at_is_when_the_first_failed_request_ended() -> None:
    def at(wall: float, error: ErrorKind | None) -> RequestRecord:
        return RequestRecord(RequestKind.PAGE, "/", 10.0, 10.25, started_wall=wall, error=error)

    assert summarize([at(1000.0, None)]).values()["first_failure_at"] == 0
    records = [at(1000.0, None), at(1003.0, ErrorKind.HTTP_5XX), at(1001.0, ErrorKind.CONNECTION)]
    assert summarize(records).values()["first_failure_at"] == pytest.approx(1001.25)
