"""First-party probes: ``http`` (generated open-loop, browser-like traffic through the router).

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
        summary=(
            "open-loop traffic through the router (pages and assets, API reads, writes read back,"
            " long downloads, websockets): failed requests, lost writes, outage, latency"
        ),
        config=HttpProbeConfig,
        factory=HttpProbe,
    )
