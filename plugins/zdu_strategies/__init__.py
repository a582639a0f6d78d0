"""First-party rollout strategies and traffic layers.

Strategies: ``recreate``, ``rolling``, ``blue-green``, ``canary``; traffic layers: ``sticky-nginx``,
``assets-shim``.

Written once over the :class:`~zdu.platform.Platform` interface, so they work on every platform.
Registered through the entry point ``strategies`` in group ``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import (
    AFFINITY,
    ASSET_STORE,
    INSTANCE_GROUPS,
    PREVIEW_ROUTE,
    TRAFFIC_SPLIT,
    StrategyPlugin,
    TrafficLayerPlugin,
    hookimpl,
)
from zdu_strategies.assets_shim import AssetsShim, AssetsShimConfig
from zdu_strategies.blue_green import BlueGreen, BlueGreenConfig
from zdu_strategies.canary import Canary, CanaryConfig
from zdu_strategies.recreate import Recreate, RecreateConfig
from zdu_strategies.rolling import Rolling, RollingConfig
from zdu_strategies.sticky_nginx import StickyNginx, StickyNginxConfig

__all__ = ["AssetsShim", "BlueGreen", "Canary", "Recreate", "Rolling", "StickyNginx"]


@hookimpl
def zdu_strategies() -> Iterator[StrategyPlugin[Any]]:
    """Register ``recreate``, ``rolling``, ``blue-green`` and ``canary``."""
    yield StrategyPlugin(
        name="recreate",
        summary="stop every old instance, then start the new ones (the maintenance-window baseline)",
        config=RecreateConfig,
        factory=Recreate,
        requires={INSTANCE_GROUPS},
    )
    yield StrategyPlugin(
        name="rolling",
        summary="replace instances in readiness-gated batches (max_surge, max_unavailable)",
        config=RollingConfig,
        factory=Rolling,
        requires={INSTANCE_GROUPS},
    )
    yield StrategyPlugin(
        name="blue-green",
        summary="start a full new set, verify it through a preview route, switch, keep the old set a while",
        config=BlueGreenConfig,
        factory=BlueGreen,
        requires={INSTANCE_GROUPS, PREVIEW_ROUTE},
    )
    yield StrategyPlugin(
        name="canary",
        summary="a growing share of requests to the new version (and a cookie), analysed at every step",
        config=CanaryConfig,
        factory=Canary,
        requires={INSTANCE_GROUPS, PREVIEW_ROUTE, TRAFFIC_SPLIT},
    )


@hookimpl
def zdu_traffic_layers() -> Iterator[TrafficLayerPlugin[Any]]:
    """Register ``sticky-nginx`` and ``assets-shim``."""
    yield TrafficLayerPlugin(
        name="sticky-nginx",
        summary="keep each client on the version that first served it while versions are mixed (cookie)",
        config=StickyNginxConfig,
        factory=StickyNginx,
        requires={INSTANCE_GROUPS, AFFINITY},
    )
    yield TrafficLayerPlugin(
        name="assets-shim",
        summary="serve /assets/ from a store holding both versions' assets while versions are mixed",
        config=AssetsShimConfig,
        factory=AssetsShim,
        requires={ASSET_STORE},
    )
