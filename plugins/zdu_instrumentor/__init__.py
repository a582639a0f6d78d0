"""Instrumentor-based upgrades: the ``instrumentor`` strategy (tenant model patch, then stage runs).

Needs ``zdu[instrumentor]``. Registered through the entry point ``instrumentor`` in group ``zdu``,
exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import StrategyPlugin, hookimpl
from zdu_instrumentor.strategy import InstrumentorConfig, InstrumentorStrategy

__all__ = ["InstrumentorStrategy"]


@hookimpl
def zdu_strategies() -> Iterator[StrategyPlugin[Any]]:
    """Register ``instrumentor``."""
    yield StrategyPlugin(
        name="instrumentor",
        summary="bump the tenant model's version (JSON patch, schema-checked), run Instrumentor's stages",
        config=InstrumentorConfig,
        factory=InstrumentorStrategy,
        requires=frozenset(),  # the base platform only: it runs Instrumentor's stages, not the fleet
    )
