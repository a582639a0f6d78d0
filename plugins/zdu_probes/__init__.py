"""First-party probes: ``http``, ``prometheus``, ``apdex`` and ``qa``.

``http`` sends generated open-loop, browser-like traffic through the router; ``prometheus`` checks
PromQL queries; ``apdex`` judges GitLab's Apdex and error ratio; ``qa`` runs a smoke-test command.

Registered through the entry point ``probes`` in group ``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import ProbePlugin, hookimpl
from zdu_probes.apdex import ApdexProbe, ApdexProbeConfig
from zdu_probes.http import HttpProbe, HttpProbeConfig
from zdu_probes.prometheus import PrometheusProbe, PrometheusProbeConfig
from zdu_probes.qa import QaProbe, QaProbeConfig

__all__ = [
    "ApdexProbe",
    "ApdexProbeConfig",
    "HttpProbe",
    "HttpProbeConfig",
    "PrometheusProbe",
    "PrometheusProbeConfig",
    "QaProbe",
    "QaProbeConfig",
]


@hookimpl
def zdu_probes() -> Iterator[ProbePlugin[Any]]:
    """Register ``http``, ``prometheus``, ``apdex`` and ``qa``."""
    yield ProbePlugin(
        name="http",
        summary=(
            "open-loop traffic through the router (pages and assets, API reads, writes read back,"
            " long downloads, websockets): failed requests, lost writes, outage, latency"
        ),
        config=HttpProbeConfig,
        factory=HttpProbe,
    )
    yield ProbePlugin(
        name="prometheus",
        summary="PromQL queries with thresholds and a no-data policy, every evaluation journalled",
        config=PrometheusProbeConfig,
        factory=PrometheusProbe,
    )
    yield ProbePlugin(
        name="apdex",
        summary="GitLab's Apdex and 5xx error ratio, from Prometheus histograms or the http probe's traffic",
        config=ApdexProbeConfig,
        factory=ApdexProbe,
    )
    yield ProbePlugin(
        name="qa",
        summary="a smoke-test command at chosen gates: its exit code is the verdict, its output journalled",
        config=QaProbeConfig,
        factory=QaProbe,
    )
