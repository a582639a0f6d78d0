"""First-party rollout strategies: ``recreate``, ``rolling``, ``blue-green``.

Written once over the :class:`~zdu.platform.Platform` interface, so they work on every platform.
Registered through the entry point ``strategies`` in group ``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import StrategyPlugin, hookimpl
from zdu_strategies.blue_green import BlueGreen, BlueGreenConfig
from zdu_strategies.recreate import Recreate, RecreateConfig
from zdu_strategies.rolling import Rolling, RollingConfig

__all__ = ["BlueGreen", "Recreate", "Rolling"]


@hookimpl
def zdu_strategies() -> Iterator[StrategyPlugin[Any]]:
    """Register ``recreate``, ``rolling`` and ``blue-green``."""
    yield StrategyPlugin(
        name="recreate",
        summary="stop every old instance, then start the new ones (the maintenance-window baseline)",
        config=RecreateConfig,
        factory=Recreate,
    )
    yield StrategyPlugin(
        name="rolling",
        summary="replace instances in readiness-gated batches (max_surge, max_unavailable)",
        config=RollingConfig,
        factory=Rolling,
    )
    yield StrategyPlugin(
        name="blue-green",
        summary="start a full new set, verify it through a preview route, switch, keep the old set a while",
        config=BlueGreenConfig,
        factory=BlueGreen,
    )
