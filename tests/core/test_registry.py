"""The plugin manager: inline registration, name lookups, bad records, broken plugins, observers."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.context import UpgradeInfo
from zdu.errors import PluginNotFound, ZduError
from zdu.plugins import NoConfig, ProbePlugin, StrategyPlugin, hookimpl
from zdu.registry import DuplicatePluginName, PluginFailure, ZduPluginManager, get_plugin_manager
from zdu.testing import register_inline

BROKEN_SOURCE = Path(__file__).parents[1] / "data" / "zdu-broken-plugin"


class Strategy:
    """Stands in for a strategy: the registry never calls a factory."""

    def __init__(self, config: object) -> None:
        self.config = config


def strategies(*names: str) -> object:
    """A plugin object registering strategies called ``names``."""

    class Plugin:
        @staticmethod
        @hookimpl
        def zdu_strategies() -> Iterator[StrategyPlugin[Any]]:
            for name in names:
                yield StrategyPlugin(name=name, summary=f"the {name} strategy", factory=Strategy)

    return Plugin()


# -- inline registration and lookup ----------------------------------------------------------------


def test_register_inline_makes_a_strategy_available(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    assert "canary" not in zdu_bare_plugin_manager.strategies()

    name = register_inline(zdu_bare_plugin_manager, strategies("canary"), name="my-plugin")

    record = zdu_bare_plugin_manager.strategy("canary")
    assert name == "my-plugin"
    assert record.summary == "the canary strategy"
    assert record.config is NoConfig
    assert zdu_bare_plugin_manager.provider_of(record) == "inline:my-plugin"


def test_bare_manager_loads_no_entry_point(
    zdu_bare_plugin_manager: ZduPluginManager, zdu_plugin_manager: ZduPluginManager
) -> None:
    assert zdu_bare_plugin_manager.strategies() == {}
    assert {"recreate", "rolling", "blue-green"} <= set(zdu_plugin_manager.strategies())


def test_unknown_name_lists_what_is_installed(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    register_inline(zdu_bare_plugin_manager, strategies("canary", "blue-green"), name="mine")

    with pytest.raises(PluginNotFound) as caught:
        zdu_bare_plugin_manager.strategy("bleu-green")

    assert str(caught.value) == "unknown strategy 'bleu-green'; installed: blue-green, canary"


def test_unknown_name_with_nothing_installed(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    with pytest.raises(PluginNotFound, match="unknown probe 'http'; installed: none"):
        zdu_bare_plugin_manager.probe("http")


def test_duplicate_names_name_both_distributions(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    zdu_bare_plugin_manager.register_plugin(strategies("canary"), "first", distribution="zdu-first")
    zdu_bare_plugin_manager.register_plugin(strategies("canary"), "second", distribution="zdu-second")

    with pytest.raises(DuplicatePluginName) as caught:
        zdu_bare_plugin_manager.strategies()

    message = str(caught.value)
    assert "'canary' is registered twice" in message
    assert "zdu-first (plugin 'first')" in message
    assert "zdu-second (plugin 'second')" in message


def test_same_name_in_different_kinds_is_allowed(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    class Probes:
        @staticmethod
        @hookimpl
        def zdu_probes() -> list[ProbePlugin[Any]]:
            return [ProbePlugin(name="canary", summary="a probe", factory=Strategy)]

    register_inline(zdu_bare_plugin_manager, strategies("canary"), name="strategies")
    register_inline(zdu_bare_plugin_manager, Probes(), name="probes")

    assert list(zdu_bare_plugin_manager.strategies()) == ["canary"]
    assert list(zdu_bare_plugin_manager.probes()) == ["canary"]


def test_a_plugin_returning_none_registers_nothing(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    class Nothing:
        @staticmethod
        @hookimpl
        def zdu_strategies() -> None:
            return None

    register_inline(zdu_bare_plugin_manager, Nothing(), name="nothing")
    register_inline(zdu_bare_plugin_manager, strategies("canary"), name="mine")

    assert list(zdu_bare_plugin_manager.strategies()) == ["canary"]


# -- bad records -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Blue-Green", "blue green", "1st", "-canary", "canary-", "a--b", "", "ünï"])
def test_a_record_with_an_invalid_name_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=f"plugin name {name!r} is not valid: use lowercase letters"):
        StrategyPlugin(name=name, summary="bad", factory=Strategy)


@pytest.mark.parametrize("name", ["canary", "blue-green", "surge_all", "k8s", "v2-canary"])
def test_valid_names_are_accepted(name: str) -> None:
    assert StrategyPlugin(name=name, summary="good", factory=Strategy).name == name


def test_a_record_of_the_wrong_type_is_a_clear_error(zdu_bare_plugin_manager: ZduPluginManager) -> None:
    class Confused:
        @staticmethod
        @hookimpl
        def zdu_strategies() -> list[Any]:
            return [ProbePlugin(name="http-strategy", summary="not a strategy", factory=Strategy)]

    register_inline(zdu_bare_plugin_manager, Confused(), name="confused")

    with pytest.raises(ZduError) as caught:
        zdu_bare_plugin_manager.strategies()

    message = str(caught.value)
    assert message.startswith("plugin 'confused' returned ProbePlugin(name='http-strategy'")
    assert message.endswith("from zdu_strategies(); expected StrategyPlugin records")


def test_a_single_record_instead_of_an_iterable_is_a_clear_error(
    zdu_bare_plugin_manager: ZduPluginManager,
) -> None:
    class Forgetful:
        @staticmethod
        @hookimpl
        def zdu_strategies() -> Any:
            return StrategyPlugin(name="canary", summary="one record, not in a list", factory=Strategy)

    register_inline(zdu_bare_plugin_manager, Forgetful(), name="forgetful")

    with pytest.raises(ZduError, match=r"plugin 'forgetful' returned StrategyPlugin\(name='canary'.*"):
        zdu_bare_plugin_manager.strategies()
    with pytest.raises(
        ZduError,
        match=r"from zdu_strategies\(\); expected an iterable of records \(return a list or yield them\)",
    ):
        zdu_bare_plugin_manager.strategies()


# -- a broken plugin, installed for real -----------------------------------------------------------


@pytest.fixture(scope="session")
def broken_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zdu-broken-plugin installed (once per session) into a directory of its own."""
    work = tmp_path_factory.mktemp("zdu-broken-plugin")
    copy = work / "source"  # building in place would leave build/ and *.egg-info in tests/data
    shutil.copytree(BROKEN_SOURCE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(copy)],
        check=True,
    )
    return site


@pytest.fixture
def broken_plugin(broken_plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """zdu-broken-plugin on ``sys.path`` for one test."""
    monkeypatch.syspath_prepend(str(broken_plugin_site))
    return broken_plugin_site


def failure_named(manager: ZduPluginManager, name: str) -> PluginFailure:
    [failure] = [f for f in manager.failures if f.name == name]
    return failure


def test_a_plugin_missing_an_extra_is_recorded_quietly_and_the_rest_loads(
    broken_plugin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="zdu.registry"):
        manager = get_plugin_manager()
        manager.strategies()
        manager.probes()

    failure = failure_named(manager, "broken")
    assert failure.distribution == "zdu-broken-plugin"
    assert failure.error == "ModuleNotFoundError: No module named 'zdu_no_such_module_xyz'"
    assert failure.extra == "fancy"
    assert failure.describe() == (
        "plugin 'broken' from zdu-broken-plugin failed to load: "
        "ModuleNotFoundError: No module named 'zdu_no_such_module_xyz' (install zdu-broken-plugin[fancy])"
    )
    assert failure.unavailable
    assert failure.install == "pip install 'zdu-broken-plugin[fancy]'"
    # quiet: one debug line, nothing a command would show at its default log level
    assert [(r.levelno, r.getMessage()) for r in caplog.records if "'broken'" in r.getMessage()] == [
        (logging.DEBUG, failure.describe())
    ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert {"recreate", "rolling", "blue-green"} <= set(manager.strategies())
    assert "http" in manager.probes()


def test_plugins_that_do_not_match_the_hooks_are_reported_and_left_out(broken_plugin: Path) -> None:
    manager = get_plugin_manager()  # check_pending() would raise if a bad plugin stayed registered

    assert sorted(f.name for f in manager.failures) == ["bad-argument", "broken", "misspelt-hook"]
    bad_argument = failure_named(manager, "bad-argument")
    assert bad_argument.error.startswith(
        "PluginValidationError: Plugin 'bad-argument' for hook 'zdu_phase_finished'"
    )
    assert "{'result'}" in bad_argument.error
    assert "\n" not in bad_argument.error
    assert bad_argument.extra is None
    misspelt = failure_named(manager, "misspelt-hook")
    assert misspelt.error == "PluginValidationError: no hook is called 'zdu_strategys'"
    assert not manager.has_plugin("bad-argument")
    assert not manager.has_plugin("misspelt-hook")
    manager.notify("zdu_phase_finished", upgrade=INFO, phase="rollout", outcome="succeeded", duration_s=1.0)


def test_the_zdu_command_still_works_beside_broken_plugins(broken_plugin: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(broken_plugin), os.environ.get("PYTHONPATH")])),
    }

    result = subprocess.run(
        [str(Path(sys.executable).parent / "zdu"), "plugins"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "  rolling " in result.stdout
    unavailable = result.stdout.split("unavailable (an optional dependency is not installed):\n")[1]
    assert unavailable.splitlines()[0] == (
        "  broken         pip install 'zdu-broken-plugin[fancy]'  [zdu-broken-plugin] "
        "(No module named 'zdu_no_such_module_xyz')"
    )
    assert "not loaded: plugin 'broken'" not in result.stdout  # unavailable, not broken
    assert "not loaded: plugin 'misspelt-hook' from zdu-broken-plugin" in result.stdout
    assert "not loaded: plugin 'bad-argument' from zdu-broken-plugin" in result.stdout


def test_other_commands_say_nothing_of_plugins_not_loaded(broken_plugin: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(broken_plugin), os.environ.get("PYTHONPATH")])),
    }

    result = subprocess.run(
        [str(Path(sys.executable).parent / "zdu"), "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("zdu, version ")
    assert result.stderr == ""


def test_asking_for_a_name_of_an_unavailable_plugin_names_the_extra(broken_plugin: Path) -> None:
    manager = get_plugin_manager()

    with pytest.raises(PluginNotFound) as caught:
        manager.strategy("broken")

    assert str(caught.value) == (
        "strategy 'broken' is not available: plugin 'broken' from zdu-broken-plugin needs its extra "
        "'fancy': pip install 'zdu-broken-plugin[fancy]'"
    )


def test_asking_for_a_name_of_a_broken_plugin_tells_its_error(broken_plugin: Path) -> None:
    manager = get_plugin_manager()

    with pytest.raises(PluginNotFound) as caught:
        manager.platform("misspelt-hook")

    assert str(caught.value) == (
        "platform 'misspelt-hook' is not available: plugin 'misspelt-hook' from zdu-broken-plugin failed "
        "to load: PluginValidationError: no hook is called 'zdu_strategys'"
    )


def test_an_unknown_name_mentions_the_broken_plugin(broken_plugin: Path) -> None:
    manager = get_plugin_manager()

    with pytest.raises(PluginNotFound) as caught:
        manager.strategy("nope")

    message = str(caught.value)
    installed = "blue-green, canary, get, instrumentor, recreate, rolling"
    assert message.startswith(f"unknown strategy 'nope'; installed: {installed}; ")
    assert "plugin 'broken' from zdu-broken-plugin failed to load" in message
    assert "(install zdu-broken-plugin[fancy])" in message


def test_a_disabled_broken_plugin_is_not_even_tried(
    broken_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "broken" in [f.name for f in get_plugin_manager().failures]

    monkeypatch.setenv("ZDU_DISABLE_PLUGINS", "broken,bad-argument")

    assert [f.name for f in get_plugin_manager().failures] == ["misspelt-hook"]
    assert len(get_plugin_manager(disabled=[]).failures) == 3


# -- no plugin at import time ----------------------------------------------------------------------


def test_importing_zdu_imports_no_plugin() -> None:
    code = (
        "import sys, zdu\n"
        "print(sorted(m for m in sys.modules if m.startswith('zdu_')))\n"
        "zdu.get_plugin_manager()\n"
        "print(sorted(m for m in sys.modules if m.startswith('zdu_') and '.' not in m))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=dict(os.environ),
    )

    at_import, after_manager = result.stdout.splitlines()
    assert at_import == "[]"
    # the check can fail: the manager does load them
    assert after_manager == (
        "['zdu_get', 'zdu_instrumentor', 'zdu_kubernetes', 'zdu_local', 'zdu_migrations', 'zdu_probes', "
        "'zdu_sim', 'zdu_strategies']"
    )


# -- lifecycle observers ---------------------------------------------------------------------------


INFO = UpgradeInfo(id="u1", target="cell-1", from_version="16.5.0", to_version="16.6.0", strategy="rolling")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def zdu_phase_started(self, upgrade: UpgradeInfo, phase: str) -> None:
        self.seen.append(f"{upgrade.id} {phase}")


class Raiser:
    @hookimpl
    def zdu_phase_started(self, phase: str) -> None:
        raise RuntimeError(f"observer bug in {phase}")


def test_a_raising_observer_does_not_stop_the_others(
    zdu_bare_plugin_manager: ZduPluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = Recorder(), Recorder()
    register_inline(zdu_bare_plugin_manager, before, name="before")
    register_inline(zdu_bare_plugin_manager, Raiser(), name="raiser")
    register_inline(zdu_bare_plugin_manager, after, name="after")

    with caplog.at_level(logging.ERROR, logger="zdu.registry"):
        zdu_bare_plugin_manager.notify("zdu_phase_started", upgrade=INFO, phase="rollout")

    assert before.seen == ["u1 rollout"]
    assert after.seen == ["u1 rollout"]
    [record] = caplog.records
    assert record.getMessage() == "observer 'raiser' failed in zdu_phase_started; the upgrade goes on"
    assert record.exc_info is not None
    assert "observer bug in rollout" in str(record.exc_info[1])
