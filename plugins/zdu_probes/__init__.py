"""First-party probes: ``http`` (generated browser-like traffic through the router).

Registered through the entry point ``probes`` in group ``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import ProbePlugin, hookimpl
from zdu_probes.http import HttpProbe, HttpProbeConfig

__all__ = ["HttpProbe", "HttpProbeConfig"]


@hookimpl
def zdu_probes() -> Iterator[ProbePlugin[Any]]:
    """Register ``http``."""
    yield ProbePlugin(
        name="http",
        summary="browser-like traffic through the router: failed requests, asset errors, outage, latency",
        config=HttpProbeConfig,
        factory=HttpProbe,
    )
