"""The prometheus and apdex probes: their arithmetic, their configuration errors, and their queries
against a real Prometheus scraping a real aiohttp application with GitLab-like request metrics.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web

from tests.e2e.observability import free_port, running_prometheus, wait_http
from zdu.config import load_config
from zdu.errors import ConfigError
from zdu.model import MeasurementStatus, Release, Target, VerdictStatus, Version
from zdu.probe import ProbeContext
from zdu.registry import get_plugin_manager
from zdu.report import failure_rate_upper_95
from zdu_demo.app_metrics import RequestMetrics
from zdu_probes.apdex import ApdexProbe, ApdexProbeConfig, apdex_score, traffic_figures
from zdu_probes.prometheus import PrometheusProbe, PrometheusProbeConfig, QueryCheck, evaluate

CONTEXT = ProbeContext(
    url="http://127.0.0.1:9",
    target=Target("cell", "local", "16.5.0"),
    release=Release("16.6.0"),
    from_version=Version.parse("16.5.0"),
)


# -- arithmetic -------------------------------------------------------------------------------------


def test_evaluate_compares_with_the_thresholds_and_follows_the_no_data_policy() -> None:
    check = QueryCheck(name="error_ratio", query="q", max=0.005)
    assert evaluate(check, "q", [0.001]).decision == "passed"
    failed = evaluate(check, "q", [0.001, 0.2])
    assert (failed.decision, failed.value, failed.reason) == ("failed", 0.2, "0.2 > 0.005")
    for policy, decision in (("fail", "failed"), ("inconclusive", "inconclusive"), ("pass", "passed")):
        empty = evaluate(attrs.evolve(check, no_data=policy), "q", [])
        assert (empty.decision, empty.value) == (decision, None)
        assert empty.reason == f"no data (no_data = {policy!r})"  # never a silent pass
    broken = evaluate(check, "q", None, "Prometheus answered 400: parse error")
    assert broken.decision == "inconclusive" and "parse error" in broken.reason
    low = QueryCheck(name="apdex", query="q", min=0.995)
    assert evaluate(low, "q", [0.99]).decision == "failed" and evaluate(low, "q", [1.0]).decision == "passed"


def test_apdex_counts_satisfied_tolerating_and_frustrated_as_gitlab_does() -> None:
    # 2 satisfied (<= 1 s), 2 tolerating (<= 4 s), 1 frustrated, 1 failed
    assert apdex_score([0.2, 1.0, 1.5, 4.0, 9.0], 1.0, 4.0, failed=1) == pytest.approx((2 + 2 / 2) / 6)
    assert apdex_score([], 1.0, 4.0) is None

    @attrs.frozen
    class Record:
        latency_s: float
        failed: bool = False

    figures = traffic_figures(
        [Record(0.1), Record(2.0), Record(0.1, failed=True)], ApdexProbeConfig(source="traffic")
    )
    assert figures == {"apdex": pytest.approx(1.5 / 3), "error_ratio": pytest.approx(1 / 3), "requests": 3.0}


def test_the_reach_of_a_zero_is_the_exact_95_percent_bound() -> None:
    assert failure_rate_upper_95(0, 300) == pytest.approx(1 - 0.05 ** (1 / 300))
    assert failure_rate_upper_95(0, 300) == pytest.approx(3 / 300, rel=0.01)  # the rule of three
    assert failure_rate_upper_95(5, 100) > 0.05 > failure_rate_upper_95(0, 100)


def test_bad_probe_options_are_named_with_their_values(tmp_path: Path) -> None:
    raw = {
        "target": {"name": "cell", "platform": "local", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling"},
        "probes": [
            {
                "name": "prometheus",
                "url": "ftp://x",
                "queries": [{"name": "up", "query": "up", "max": 1}],
            },
            {
                "name": "prometheus",
                "url": "http://127.0.0.1:9090",
                "queries": [{"name": "Bad Name", "query": "up"}],
            },
            {
                "name": "prometheus",
                "url": "http://127.0.0.1:9090",
                "queries": [{"name": "ok", "query": "up", "no_data": "maybe", "max": 1}],
            },
            {"name": "apdex", "min_apdex": 1.5, "url": "http://127.0.0.1:9090"},
            {"name": "qa", "command": [], "at": ["sometime"]},
        ],
        "upgrade": {"metrics_address": "nowhere", "pushgateway": "gopher://x"},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(raw, get_plugin_manager())
    text = "\n".join(caught.value.problems)
    assert "probes[0]" in text and "'ftp://x'" in text
    assert "'Bad Name'" in text
    assert "probes[2]" in text and "'maybe'" in text
    assert "probes[3]" in text and "min_apdex" in text and "1.5" in text
    assert "probes[4]" in text and "command" in text
    assert "upgrade.metrics_address" in text and "'nowhere'" in text
    assert "upgrade.pushgateway" in text


# -- against a real Prometheus ----------------------------------------------------------------------


class App:
    """An aiohttp app with GitLab-like metrics: ``/`` answers 200 after ``delay``, ``/boom`` 500."""

    def __init__(self, version: str) -> None:
        self.port = free_port()
        self.metrics = RequestMetrics(version)
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _ok(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return web.Response(text="ok")

    async def _boom(self, _request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._ok)
        app.router.add_get("/boom", self._boom)
        self.metrics.install(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> App:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def hit(self, path: str, times: int) -> None:
        for _ in range(times):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                    answer.read()
            except urllib.error.HTTPError:
                pass


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, App, str]]:
    """Two app instances (16.5.0 and 16.6.0) scraped every second by a real Prometheus."""
    with App("16.5.0") as old, App("16.6.0") as new:
        directory = tmp_path_factory.mktemp("prometheus")
        with running_prometheus(directory) as prometheus:
            prometheus.set_targets([f"127.0.0.1:{old.port}", f"127.0.0.1:{new.port}"])
            assert prometheus.wait_for("count(up == 1) == 2")
            # traffic spread over several scrapes (a rate needs the counter to move between two)
            for _ in range(10):
                old.hit("/", 5)
                new.hit("/", 5)
                new.hit("/boom", 1)
                time.sleep(0.3)
            five_hundreds = 'sum(rate(http_requests_total{version="16.6.0",status="500"}[1m])) > 0'
            assert prometheus.wait_for(five_hundreds)
            yield old, new, prometheus.url


def test_a_5xx_ratio_over_its_threshold_fails_and_every_evaluation_says_why(scraped) -> None:
    _old, _new, url = scraped
    probe = PrometheusProbe(
        PrometheusProbeConfig(
            url=url,
            queries=[
                {
                    "name": "error_ratio",
                    "query": 'sum(rate(http_requests_total{version="$release",status=~"5.."}[1m])) / '
                    'sum(rate(http_requests_total{version="$release"}[1m]))',
                    "max": 0.005,
                },
                {  # the negative control: the old version served no 5xx, and the same query sees 0
                    "name": "old_error_ratio",
                    # no 5xx series at all is no error: "or vector(0)", else the ratio has no data
                    "query": '(sum(rate(http_requests_total{version="$from_version",status=~"5.."}[1m])) '
                    'or vector(0)) / sum(rate(http_requests_total{version="$from_version"}[1m]))',
                    "max": 0.005,
                    "no_data": "fail",
                },
            ],
        )
    )
    probe.start(CONTEXT)
    measurement = probe.measure()
    assert measurement.status is MeasurementStatus.FAILED
    new, old = measurement.evaluations
    assert new["check"] == "error_ratio" and 'version="16.6.0"' in new["query"]
    assert new["decision"] == "failed" and new["value"] == pytest.approx(10 / 60, rel=0.35)
    assert new["threshold"] == "<= 0.005"
    assert old["decision"] == "passed" and old["value"] == 0  # data, and zero: the instrument sees
    assert measurement.values["error_ratio"] > 0.005
    assert probe.stop().status is VerdictStatus.FAILED


@pytest.mark.parametrize(
    ("policy", "status"), [("fail", "failed"), ("inconclusive", "inconclusive"), ("pass", "successful")]
)
def test_a_query_without_data_follows_its_policy(scraped, policy: str, status: str) -> None:
    _old, _new, url = scraped
    probe = PrometheusProbe(
        PrometheusProbeConfig(
            url=url,
            queries=[
                {
                    "name": "missing",
                    "query": 'sum(rate(http_requests_total{version="99.0.0"}[1m]))',
                    "min": 1,
                    "no_data": policy,
                }
            ],
        )
    )
    probe.start(CONTEXT)
    measurement = probe.measure()
    assert measurement.status.value == status
    (evaluation,) = measurement.evaluations
    assert evaluation["value"] is None and evaluation["reason"] == f"no data (no_data = {policy!r})"


def test_an_unreachable_prometheus_is_inconclusive_with_the_error() -> None:
    probe = PrometheusProbe(
        PrometheusProbeConfig(
            url=f"http://127.0.0.1:{free_port()}",
            queries=[{"name": "up", "query": "up", "min": 1}],
            timeout=2,
        )
    )
    probe.start(CONTEXT)
    measurement = probe.measure()
    assert measurement.status is MeasurementStatus.INCONCLUSIVE
    assert "did not answer" in measurement.reasons[0]


def test_apdex_from_the_histograms_of_each_version(scraped) -> None:
    _old, _new, url = scraped
    old = ApdexProbe(ApdexProbeConfig(url=url, selector='version="$from_version"', window="1m"))
    old.start(CONTEXT)
    measured = old.measure()
    assert measured.status is MeasurementStatus.SUCCESSFUL, measured
    assert measured.values["apdex"] == pytest.approx(1.0) and measured.values["error_ratio"] == 0
    new = ApdexProbe(ApdexProbeConfig(url=url, selector='version="$release"', window="1m"))
    new.start(CONTEXT)
    measured = new.measure()
    assert measured.status is MeasurementStatus.FAILED
    assert measured.values["error_ratio"] == pytest.approx(10 / 60, rel=0.35)
    assert not math.isnan(measured.values["apdex"])
    assert any("error_ratio" in reason for reason in measured.reasons)


def test_apdex_from_the_http_probes_own_traffic_against_the_demo_app(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    with (
        log.open("wb") as out,
        subprocess.Popen(
            [sys.executable, "-m", "zdu_demo.demo_app", "--version", "16.6.0", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as app,
    ):
        try:
            wait_http(f"http://127.0.0.1:{port}/-/readiness")
            probe = ApdexProbe(
                ApdexProbeConfig(source="traffic", traffic={"rps": 40, "mix": {"page": 1.0}}, min_requests=10)
            )
            probe.start(attrs.evolve(CONTEXT, url=f"http://127.0.0.1:{port}"))
            time.sleep(2.0)
            measured = probe.measure()
            verdict = probe.stop()
        finally:
            app.terminate()
    assert measured.status is MeasurementStatus.SUCCESSFUL, measured
    assert measured.values["judged_requests"] >= 10 and measured.values["apdex"] >= 0.995
    assert measured.values["error_ratio"] == 0
    assert verdict.status is VerdictStatus.PASSED
