"""Prometheus metrics of an upgrade, named after Argo Rollouts' and Flagger's, served and pushed.

An :class:`UpgradeMetrics` observer turns the lifecycle hooks into metrics in its own registry:

* ``zdu_upgrade_info{target,strategy,phase,status,from_version,to_version}`` = 1 (Argo's
  ``rollout_info``): where the upgrade stands;
* ``zdu_upgrade_duration_seconds{target,strategy,status}``: how long it has run (so far, or in all);
* ``zdu_upgrade_phase_duration_seconds{target,phase,outcome}``: each phase's length;
* ``zdu_probe_requests_total{target,probe,kind,outcome}``: the probes' requests (``outcome``: ``ok``,
  ``failed``, ``asset_error``; ``kind`` as the probe counts them, ``all`` when it does not split);
* ``zdu_gate_decisions_total{target,probe,decision}`` and ``zdu_gate_value{target,probe,check}``:
  every gate measurement's decision and the last value of each check (or figure) of each probe
  (Flagger's analysis metrics);
* ``zdu_upgrade_new_version_traffic_share{target}``: the router's share on the release (Flagger's
  ``flagger_canary_weight``, as a ratio);
* ``deployment_duration_seconds{deployment_type,status,version}``: a histogram observed once at the
  end, as GitLab's release tooling pushes it (``deployment_type`` is the target, ``status``
  ``success`` or ``failed``).

While an upgrade runs, :meth:`UpgradeMetrics.serve` exposes them on ``upgrade.metrics_address``
(``--metrics-address``); at its end, :meth:`UpgradeMetrics.push` sends them to the Pushgateway in
``upgrade.pushgateway`` (``--pushgateway``) under job ``zdu`` and the target's name.

A Grafana dashboard over these metrics (and the fleet's own ``http_requests_total`` and
``http_request_duration_seconds``) ships with the package: :func:`grafana_dashboard`, or the file
``zdu/dashboards/zdu-upgrades.json`` to import.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, start_http_server

from zdu.context import UpgradeInfo
from zdu.model import Event, Report, UpgradeStatus
from zdu.records import hookimpl

__all__ = ["METRIC_NAMES", "UpgradeMetrics", "grafana_dashboard", "parse_address"]

log = logging.getLogger("zdu.metrics")

#: Every metric family the observer exports (histograms and counters by their family name).
METRIC_NAMES = (
    "zdu_upgrade_info",
    "zdu_upgrade_duration_seconds",
    "zdu_upgrade_phase_duration_seconds",
    "zdu_probe_requests_total",
    "zdu_gate_decisions_total",
    "zdu_gate_value",
    "zdu_upgrade_new_version_traffic_share",
    "deployment_duration_seconds",
)

#: Buckets of ``deployment_duration_seconds``: from a demo's seconds to a fleet's hours.
DEPLOYMENT_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))


def grafana_dashboard() -> dict[str, Any]:
    """The Grafana dashboard over zdu's metrics (``zdu/dashboards/zdu-upgrades.json``), as JSON data."""
    text = importlib.resources.files("zdu").joinpath("dashboards/zdu-upgrades.json").read_text("utf-8")
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, all interfaces) into its parts; raise ``ValueError`` naming it."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as '127.0.0.1:9464', got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class UpgradeMetrics:
    """A lifecycle observer keeping an upgrade's metrics (register it on the plugin manager)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.info = Gauge(
            "zdu_upgrade_info",
            "An upgrade: where it stands (always 1).",
            ["target", "strategy", "phase", "status", "from_version", "to_version"],
            registry=r,
        )
        self.duration = Gauge(
            "zdu_upgrade_duration_seconds",
            "How long the upgrade has run (in all, once it ended).",
            ["target", "strategy", "status"],
            registry=r,
        )
        self.phase_duration = Gauge(
            "zdu_upgrade_phase_duration_seconds",
            "How long each phase took.",
            ["target", "phase", "outcome"],
            registry=r,
        )
        self.requests = Counter(
            "zdu_probe_requests",
            "Requests the probes sent, by kind and outcome (ok, failed, asset_error).",
            ["target", "probe", "kind", "outcome"],
            registry=r,
        )
        self.decisions = Counter(
            "zdu_gate_decisions",
            "Gate measurements by decision (successful, failed, inconclusive).",
            ["target", "probe", "decision"],
            registry=r,
        )
        self.value = Gauge(
            "zdu_gate_value",
            "The last value of each check a probe made.",
            ["target", "probe", "check"],
            registry=r,
        )
        self.share = Gauge(
            "zdu_upgrade_new_version_traffic_share",
            "The router's share of traffic on the release (0 to 1).",
            ["target"],
            registry=r,
        )
        self.deployment = Histogram(
            "deployment_duration_seconds",
            "Duration of a deployment, observed once at its end (as release tooling pushes it).",
            ["deployment_type", "status", "version"],
            buckets=DEPLOYMENT_BUCKETS,
            registry=r,
        )
        self._started = time.monotonic()
        self._upgrade: UpgradeInfo | None = None
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- serving and pushing -----------------------------------------------------------------------

    def serve(self, address: str) -> str:
        """Serve the metrics on ``HOST:PORT`` (port 0: any free one) at ``/metrics``; return the URL."""
        host, port = parse_address(address)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound = self._server.server_address[1]
        return f"http://{host}:{bound}/metrics"

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def push(self, gateway: str, target: str) -> None:
        """Replace this target's group on the Pushgateway with the metrics (job ``zdu``)."""
        push_to_gateway(
            gateway, job="zdu", registry=self.registry, grouping_key={"target": target}, timeout=10
        )

    # -- lifecycle hooks ---------------------------------------------------------------------------

    def _set_info(self, upgrade: UpgradeInfo, phase: str, status: str) -> None:
        with self._lock:
            self.info.clear()
            self.info.labels(
                upgrade.target, upgrade.strategy, phase, status, upgrade.from_version, upgrade.to_version
            ).set(1)
            self.duration.clear()
            self.duration.labels(upgrade.target, upgrade.strategy, status).set(
                time.monotonic() - self._started
            )

    @hookimpl
    def zdu_upgrade_started(self, upgrade: UpgradeInfo) -> None:
        """Start the clock."""
        self._started = time.monotonic()
        self._upgrade = upgrade
        self._set_info(upgrade, "preflight", "running")

    @hookimpl
    def zdu_phase_started(self, upgrade: UpgradeInfo, phase: str) -> None:
        """Move ``zdu_upgrade_info`` to the phase."""
        self._set_info(upgrade, phase, "running")

    @hookimpl
    def zdu_phase_finished(self, upgrade: UpgradeInfo, phase: str, outcome: str, duration_s: float) -> None:
        """Record the phase's length."""
        self.phase_duration.labels(upgrade.target, phase, outcome).set(duration_s)

    @hookimpl
    def zdu_event(self, upgrade: UpgradeInfo, event: Event) -> None:
        """Count measurements: decisions, check values, requests, and the release's share."""
        if not event.kind.startswith("measurement-"):
            return
        data: dict[str, Any] = dict(event.data)
        probe = str(data.get("probe", ""))
        self.decisions.labels(upgrade.target, probe, str(data.get("status", ""))).inc()
        for name, figure in dict(data.get("values", {})).items():
            if isinstance(figure, int | float):
                self.value.labels(upgrade.target, probe, str(name)).set(figure)
        for evaluation in data.get("evaluations", ()):
            value = evaluation.get("value")
            if isinstance(value, int | float):
                self.value.labels(upgrade.target, probe, str(evaluation.get("check", ""))).set(value)
        share = data.get("new_share")
        if isinstance(share, int | float) and share >= 0:
            self.share.labels(upgrade.target).set(share)
        for kind, outcome, count in request_counts(data.get("values", {})):
            if count > 0:
                self.requests.labels(upgrade.target, probe, kind, outcome).inc(count)

    @hookimpl
    def zdu_upgrade_finished(self, upgrade: UpgradeInfo, report: Report) -> None:
        """Record how it ended, and observe ``deployment_duration_seconds``."""
        self._set_info(upgrade, "done", report.status.value)
        with self._lock:
            self.duration.clear()
            self.duration.labels(upgrade.target, upgrade.strategy, report.status.value).set(
                report.duration_seconds
            )
        if report.status is not UpgradeStatus.PAUSED:
            status = "success" if report.status is UpgradeStatus.SUCCEEDED else "failed"
            self.deployment.labels(upgrade.target, status, upgrade.to_version).observe(
                report.duration_seconds
            )


def request_counts(values: Any) -> list[tuple[str, str, float]]:
    """``(kind, outcome, count)`` of a measurement's figures.

    Per-kind figures (``page_requests``/``page_failed``, ...) when the probe gives them, else the
    totals (``requests``, ``failed_requests``) as kind ``all``; ``asset_errors`` as outcome
    ``asset_error`` of kind ``asset`` (or ``all``).
    """
    if not isinstance(values, dict):
        return []
    numbers = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
    kinds = sorted(
        k.removesuffix("_requests")
        for k in numbers
        if k.endswith("_requests")
        and k not in ("failed_requests", "requests")
        and not k.startswith("failure")
    )
    asset_errors = numbers.get("asset_errors", 0.0)
    counts: list[tuple[str, str, float]] = []
    if kinds:
        for kind in kinds:
            total, failed = numbers[f"{kind}_requests"], numbers.get(f"{kind}_failed", 0.0)
            errors = asset_errors if kind == "asset" else 0.0
            counts += [(kind, "ok", max(total - failed - errors, 0.0)), (kind, "failed", failed)]
        if asset_errors:
            counts.append(("asset" if "asset" in kinds else "all", "asset_error", asset_errors))
        return counts
    if "requests" not in numbers:
        return []
    failed = numbers.get("failed_requests", 0.0)
    return [
        ("all", "ok", max(numbers["requests"] - failed - asset_errors, 0.0)),
        ("all", "failed", failed),
        ("all", "asset_error", asset_errors),
    ]
