"""A third-party plugin, installed for real with pip, is found, listed, configured and disabled.

The plugin is tests/data/zdu-example-plugin, the package docs/plugin-guide.md shows in full. It is
installed once per session into a temporary directory (``pip install --no-deps --target``); each test
that needs it puts that directory on ``sys.path`` and ``PYTHONPATH`` and takes it off afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from zdu.config import load_config
from zdu.context import UpgradeInfo
from zdu.errors import ConfigError, PluginNotFound
from zdu.registry import get_plugin_manager

ZDU = Path(sys.executable).parent / "zdu"
SUMMARY = "start a full new set beside the old one, then switch to it and remove the old one"


def zdu_plugins_json(env: Mapping[str, str] | None = None) -> dict[str, list[dict[str, str]]]:
    result = subprocess.run(
        [str(ZDU), "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, list[dict[str, str]]] = json.loads(result.stdout)
    return data


def names(entries: Sequence[Mapping[str, str]]) -> list[str]:
    return [entry["name"] for entry in entries]


# -- found and listed ------------------------------------------------------------------------------


def test_not_installed_not_found() -> None:
    manager = get_plugin_manager()

    assert "surge-all" not in manager.strategies()
    assert manager.failures == []  # nothing installed by another test is left on sys.path
    with pytest.raises(PluginNotFound, match=r"unknown strategy 'surge-all'; installed: .*rolling"):
        manager.strategy("surge-all")


def test_fresh_manager_lists_the_installed_strategy(example_plugin: Path) -> None:
    manager = get_plugin_manager()

    record = manager.strategy("surge-all")
    assert record.summary == SUMMARY
    assert manager.provider_of(record) == "zdu-example-plugin"
    assert manager.distribution_of("example") == "zdu-example-plugin"
    assert record.config.__name__ == "SurgeAllConfig"
    assert "rolling" in manager.strategies()  # first-party plugins still load beside it
    assert manager.failures == []
    module_file = Path(sys.modules["zdu_example_plugin"].__file__ or "")
    assert module_file.is_relative_to(example_plugin), "loaded from somewhere else than the installed copy"


def test_zdu_plugins_command_lists_it(example_plugin: Path) -> None:
    data = zdu_plugins_json()

    entry = next(e for e in data["strategies"] if e["name"] == "surge-all")
    assert entry == {
        "name": "surge-all",
        "summary": SUMMARY,
        "distribution": "zdu-example-plugin",
        "requires": ["instance-groups"],
    }
    assert data["failed"] == []


def test_disabled_by_environment(example_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = zdu_plugins_json({"ZDU_DISABLE_PLUGINS": "example"})

    assert "surge-all" not in names(data["strategies"])
    assert "rolling" in names(data["strategies"])
    assert data["failed"] == []

    monkeypatch.setenv("ZDU_DISABLE_PLUGINS", "probes, example")
    manager = get_plugin_manager()
    assert "surge-all" not in manager.strategies()
    assert "http" not in manager.probes()
    assert "rolling" in manager.strategies()


# -- configured ------------------------------------------------------------------------------------


def config(**strategy: object) -> dict[str, object]:
    return {
        "target": {"name": "cell-1", "platform": "local", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "surge-all", **strategy},
    }


def test_its_options_are_structured_into_its_config_class(example_plugin: Path) -> None:
    manager = get_plugin_manager()

    spec = load_config(config(settle_seconds=2), manager).strategy
    assert spec.name == "surge-all"
    assert type(spec.options).__name__ == "SurgeAllConfig"
    assert spec.options.settle_seconds == 2.0
    assert load_config(config(), manager).strategy.options.settle_seconds == 0.0


def test_bad_options_are_reported_per_field(example_plugin: Path) -> None:
    manager = get_plugin_manager()

    with pytest.raises(ConfigError) as bad_type:
        load_config(config(settle_seconds="soon"), manager)
    assert any(p.startswith("strategy.settle_seconds: ") and "'soon'" in p for p in bad_type.value.problems)
    with pytest.raises(ConfigError) as negative:
        load_config(config(settle_seconds=-1), manager)
    # an attrs validator runs in the class's constructor: the problem names the table, then the field
    assert any(
        p.startswith("strategy") and "'settle_seconds' must be >= 0" in p for p in negative.value.problems
    )
    with pytest.raises(ConfigError) as unknown:
        load_config(config(max_surge=2), manager)
    assert any("unknown field 'max_surge'" in p and "settle_seconds" in p for p in unknown.value.problems)


# -- its lifecycle hook fires ----------------------------------------------------------------------


INFO = UpgradeInfo(id="u1", target="cell-1", from_version="16.5.0", to_version="16.6.0", strategy="surge-all")


def test_its_observer_sees_finished_phases(
    example_plugin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "phases.log"
    monkeypatch.setenv("ZDU_EXAMPLE_PHASE_LOG", str(log))
    manager = get_plugin_manager()

    for phase in ("preflight", "migrate(pre)", "rollout"):
        manager.notify("zdu_phase_finished", upgrade=INFO, phase=phase, outcome="succeeded", duration_s=0.5)

    assert log.read_text(encoding="utf-8").splitlines() == ["preflight", "migrate(pre)", "rollout"]
