"""The traffic layers are plugins like any other: registered through the entry point, named in config."""

from __future__ import annotations

import pytest

from zdu.config import load_config
from zdu.errors import PluginNotFound
from zdu.registry import get_plugin_manager
from zdu.strategy import TrafficLayer
from zdu_strategies.assets_shim import AssetsShimConfig
from zdu_strategies.sticky_nginx import StickyNginxConfig

LAYERS = {"sticky-nginx": StickyNginxConfig, "assets-shim": AssetsShimConfig}


def test_a_fresh_plugin_manager_lists_both_layers_from_the_entry_point() -> None:
    manager = get_plugin_manager()
    layers = manager.traffic_layers()
    assert set(LAYERS) <= set(layers)
    for name, config_type in LAYERS.items():
        record = layers[name]
        assert record.config is config_type
        assert record.summary
        assert isinstance(record.factory(config_type()), TrafficLayer)
        assert manager.provider_of(record) == "zdu"  # the distribution whose entry point registered it


def test_without_the_entry_point_the_layers_are_not_there() -> None:
    assert not set(LAYERS) & set(get_plugin_manager(entry_points=False).traffic_layers())
    assert not set(LAYERS) & set(get_plugin_manager(disabled=["strategies"]).traffic_layers())


@pytest.mark.parametrize("strategy", ["rolling", "blue-green"])
@pytest.mark.parametrize("layers", [["sticky-nginx"], ["assets-shim"], ["sticky-nginx", "assets-shim"]])
def test_each_layer_combines_with_rolling_and_blue_green_in_configuration(
    strategy: str, layers: list[str]
) -> None:
    config = load_config(
        {
            "target": {"name": "cell", "platform": "local", "version": "16.5.0"},
            "release": {"version": "16.6.0"},
            "strategy": {"name": strategy, "layers": layers},
        },
        get_plugin_manager(),
    )
    assert config.strategy.name == strategy
    assert [spec.name for spec in config.layers] == layers
    assert all(isinstance(spec.build(), TrafficLayer) for spec in config.layers)


def test_an_unknown_layer_is_named_with_those_installed() -> None:
    with pytest.raises(PluginNotFound, match=r"sticky-haproxy.*assets-shim.*sticky-nginx"):
        get_plugin_manager().traffic_layer("sticky-haproxy")
