"""``[layers.sticky-nginx] affinity``: its default, its values, and a bad one named in the error."""

from __future__ import annotations

from typing import Any

import pytest

from zdu.config import load_config
from zdu.errors import ConfigError
from zdu.registry import get_plugin_manager


def _config(layer: dict[str, Any] | None) -> Any:
    raw: dict[str, Any] = {
        "target": {"name": "cell", "platform": "local", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling", "layers": ["sticky-nginx"]},
    }
    if layer is not None:
        raw["layers"] = {"sticky-nginx": layer}
    return load_config(raw, get_plugin_manager())


@pytest.mark.parametrize(("layer", "affinity"), [(None, "assets"), ({"affinity": "session"}, "session")])
def test_affinity_defaults_to_assets(layer: dict[str, Any] | None, affinity: str) -> None:
    (spec,) = _config(layer).layers
    assert spec.build().config.affinity == affinity


def test_a_bad_affinity_names_the_field_and_the_value() -> None:
    with pytest.raises(ConfigError, match=r"affinity must be one of assets, session, got 'pages'"):
        _config({"affinity": "pages"})
