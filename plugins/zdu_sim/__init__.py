"""The simulated platform ``sim``: instances that are timers, for planning and testing fleets.

A fleet of a thousand cells cannot be a thousand nginx and a few thousand processes on one machine;
its orchestration (rings, bake, budgets, windows, resume after a kill) can still be tested and
measured end to end through ordinary upgrades, with instances that take a configured time to start
and drain, can be told to fail, and keep their state in a file per cell. Registered through the entry
point ``sim`` in group ``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import AFFINITY, INSTANCE_GROUPS, PREVIEW_ROUTE, PlatformPlugin, hookimpl


@hookimpl
def zdu_platforms() -> Iterator[PlatformPlugin[Any]]:
    """Register ``sim``."""
    from zdu_sim.platform import SimPlatform, SimPlatformConfig  # noqa: PLC0415

    yield PlatformPlugin(
        name="sim",
        summary="simulated instances (timers with start, drain and failure behaviour), for fleets",
        config=SimPlatformConfig,
        factory=SimPlatform,
        provides={INSTANCE_GROUPS, PREVIEW_ROUTE, AFFINITY},
    )
