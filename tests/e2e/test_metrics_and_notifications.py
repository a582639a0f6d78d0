"""Metrics while an upgrade runs, pushed to a real Pushgateway at its end, and webhook notifications.

The Pushgateway is Debian's ``prometheus-pushgateway``, started by the test on a free loopback port.
The webhook is a plain HTTP server that answers the first post with a 500, so the notifier's retry
is seen at work.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest

from tests.e2e.conftest import TO, write_config
from tests.e2e.observability import TOLERANT, free_port, get_text, running_prometheus, running_pushgateway
from zdu.errors import UsageError
from zdu.metrics import METRIC_NAMES, grafana_dashboard
from zdu.upgrade import Upgrade

pytestmark = pytest.mark.slow

TOKEN = "hook-token-5d2a"


class Webhook:
    """A webhook receiver: the first ``failures`` posts answer 500, then 200; keeps every body."""

    def __init__(self, failures: int = 1) -> None:
        self.bodies: list[dict] = []
        self.attempts = 0
        self.failures = failures
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                hook.attempts += 1
                if hook.attempts <= hook.failures:
                    self.send_response(500)
                else:
                    hook.bodies.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def add_outputs(config: Path, **options: object) -> None:
    """Add keys to ``[upgrade]`` (the last table write_config writes)."""
    with config.open("a") as out:
        out.writelines(f"{key} = {json.dumps(value)}\n" for key, value in options.items())


def test_metrics_are_served_during_the_upgrade_and_pushed_at_its_end(tmp_path: Path, fleet) -> None:
    port = free_port()
    with (
        running_pushgateway(tmp_path / "pushgateway") as gateway,
        running_prometheus(
            tmp_path / "prometheus",
            {"pushgateway": [gateway.removeprefix("http://")]},
            honor=("pushgateway",),
        ) as prometheus,
        Webhook() as hook,
    ):
        config = write_config(
            tmp_path, strategy="rolling", options={"max_surge": 1, "max_unavailable": 0}, probe=TOLERANT
        )
        add_outputs(config, metrics_address=f"127.0.0.1:{port}", pushgateway=gateway, webhooks=[hook.url])
        fleet(config)
        before = get_text(gateway + "/metrics")
        assert "deployment_duration_seconds" not in before and "zdu_upgrade_info" not in before
        with pytest.raises(OSError):
            get_text(f"http://127.0.0.1:{port}/metrics", timeout=2)

        # a port already taken is bad input, named, before anything starts
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = Upgrade.from_config(config)
            busy.config = attrs.evolve(busy.config, metrics_address=f"127.0.0.1:{taken.getsockname()[1]}")
            with pytest.raises(UsageError, match=r"upgrade\.metrics_address: cannot serve on"):
                busy.run()
            busy.close()
            assert busy.journal.upgrades() == []

        upgrade = Upgrade.from_config(config)
        scraped: list[str] = []
        result: list = []
        runner = threading.Thread(target=lambda: result.append(upgrade.run()))
        runner.start()
        deadline = time.monotonic() + 120
        while runner.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # before it serves, and after
                scraped.append(get_text(f"http://127.0.0.1:{port}/metrics", timeout=2))
            time.sleep(0.2)
        runner.join(10)
        upgrade.close()
        (report,) = result
        assert report.ok, report.summary()

        during = [text for text in scraped if 'status="running"' in text]
        assert during, "no scrape saw the upgrade running"
        last = during[-1]
        for name in (
            "zdu_upgrade_info",
            "zdu_upgrade_duration_seconds",
            "zdu_probe_requests_total",
            "zdu_gate_decisions_total",
            "zdu_upgrade_new_version_traffic_share",
        ):
            assert re.search(rf"^{name}\{{", last, re.MULTILINE), f"{name} not served during the upgrade"
        ok = re.findall(r'^zdu_probe_requests_total\{[^}]*kind="(\w+)",outcome="ok"[^}]*\} (\S+)', last, re.M)
        assert sum(float(count) for _, count in ok) > 0, last
        assert "page" in {kind for kind, _ in ok}  # by kind, as the http probe counts them
        # served only while it runs
        with pytest.raises(OSError):
            get_text(f"http://127.0.0.1:{port}/metrics", timeout=2)

        pushed = get_text(gateway + "/metrics")
        for name in METRIC_NAMES:
            assert name in pushed, f"{name} not on the Pushgateway"
        count = re.search(r"^deployment_duration_seconds_count\{([^}]*)\} (\S+)", pushed, re.MULTILINE)
        assert count and float(count.group(2)) == 1
        labels = count.group(1)
        assert (
            'deployment_type="e2e"' in labels and 'status="success"' in labels and f'version="{TO}"' in labels
        )
        assert 'job="zdu"' in labels and 'target="e2e"' in labels
        total = re.search(r"^deployment_duration_seconds_sum\{[^}]*\} (\S+)", pushed, re.MULTILINE)
        assert total and abs(float(total.group(1)) - report.duration_seconds) < 0.01
        assert re.search(r'^zdu_upgrade_info\{[^}]*status="succeeded"', pushed, re.MULTILINE)
        assert re.search(r'^zdu_upgrade_phase_duration_seconds\{[^}]*phase="rollout"', pushed, re.MULTILINE)

        # the Grafana dashboard: every panel's query runs on the real Prometheus (which scrapes the
        # Pushgateway), and those over zdu's own metrics find the pushed upgrade
        assert prometheus.wait_for('zdu_upgrade_info{status="succeeded"}'), (
            "Prometheus never scraped the push"
        )
        dashboard = grafana_dashboard()
        answered = 0
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expression = target["expr"].replace("$__rate_interval", "1m").replace("$target", ".*")
                result = prometheus.query(expression)  # raises on a query Prometheus rejects
                answered += bool(result)
                if "zdu_upgrade_info" in expression or "deployment_duration_seconds_count" in expression:
                    assert result, f"panel {panel['title']!r} found nothing"
        assert answered >= 6, f"only {answered} panels had data"

        # the webhook: refused once, retried, then told in Slack's format
        assert hook.attempts == 2 and len(hook.bodies) == 1
        (body,) = hook.bodies
        assert body["text"] == f"zdu: e2e 16.5.0 -> {TO}: succeeded"
        assert body["attachments"][0]["color"] == "good"
        journal = json.dumps([dict(e.data) for e in upgrade.journal.events(report.upgrade_id)])
        assert TOKEN not in journal and TOKEN not in json.dumps(upgrade.journal.get(report.upgrade_id).config)


def test_a_manual_rollback_is_notified(tmp_path: Path, fleet) -> None:
    with Webhook(failures=0) as hook:
        # a probe that never has enough requests is inconclusive: the upgrade pauses for a person
        config = write_config(tmp_path, strategy="rolling", probe={**TOLERANT, "min_requests": 10**6})
        add_outputs(config, webhooks=[hook.url])
        fleet(config)
        upgrade = Upgrade.from_config(config)
        paused = upgrade.run()
        assert paused.status.value == "paused", paused.summary()
        rolled = upgrade.rollback(paused.upgrade_id)
        upgrade.close()
        assert rolled.status.value == "rolled_back"
        texts = [b["text"] for b in hook.bodies]
        assert texts == [
            f"zdu: e2e 16.5.0 -> {TO}: paused",
            f"zdu: e2e 16.5.0 -> {TO}: rolled back (manual rollback)",
        ]
        assert hook.bodies[1]["attachments"][0]["text"] == "rolled back on request ('zdu rollback')"
