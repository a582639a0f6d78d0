"""A third-party plugin, installed for real with pip, is found, listed, configured and disabled.

The plugin is tests/data/zdu-example-plugin, the package docs/plugin-guide.md shows in full. It is
installed once per session into a temporary directory (``pip install --no-deps --target``); each test
that needs it puts that directory on ``sys.path`` and ``PYTHONPATH`` and takes it off afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from zdu.config import load_config
from zdu.context import UpgradeContext, UpgradeInfo
from zdu.errors import ConfigError, PluginNotFound
from zdu.model import Release, Target, Version
from zdu.platform import Instance, InstanceGroup
from zdu.registry import get_plugin_manager

EXAMPLE_SOURCE = Path(__file__).parents[1] / "data" / "zdu-example-plugin"
ZDU = Path(sys.executable).parent / "zdu"
SUMMARY = "start a full new set beside the old one, then switch to it and remove the old one"


def pip_install(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build and install the package at ``source`` into a fresh directory; return that directory.

    The source is copied first: building in place would leave build/ and *.egg-info in tests/data.
    """
    work = tmp_path_factory.mktemp(source.name)
    copy = work / "source"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(copy)],
        check=True,
    )
    return site


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory zdu-example-plugin is installed into (once per session)."""
    return pip_install(EXAMPLE_SOURCE, tmp_path_factory)


@pytest.fixture
def example_plugin(example_plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """zdu-example-plugin on ``sys.path`` and ``PYTHONPATH`` for one test."""
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(example_plugin_site), os.environ.get("PYTHONPATH")]))
    )
    yield example_plugin_site
    sys.modules.pop("zdu_example_plugin", None)


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
    assert entry == {"name": "surge-all", "summary": SUMMARY, "distribution": "zdu-example-plugin"}
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


# -- the strategy itself, over an in-memory platform -----------------------------------------------


class InMemoryRouter:
    """A test double of :class:`zdu.platform.Router`: a dict of weights."""

    url = "http://in-memory.invalid"

    def __init__(self, platform: InMemoryPlatform, weights: dict[str, int]) -> None:
        self.platform = platform
        self._weights = weights

    def weights(self) -> Mapping[str, int]:
        return dict(self._weights)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        self._weights = {group: weight for group, weight in weights.items() if weight > 0}
        self.platform.record(f"route {sorted(self._weights)}")

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        return self._weights == {group: weight for group, weight in weights.items() if weight > 0}

    def set_preview(self, group: str | None) -> str | None:
        return None

    def remove_managed_routes(self) -> None:
        pass


class InMemoryPlatform:
    """A test double of :class:`zdu.platform.Platform`: groups are counts of always-ready instances.

    After every change it records whether any instance still serves traffic, so a test can assert that
    there was never an outage.
    """

    def __init__(self, version: str, replicas: int) -> None:
        group = self.group_name(Version.parse(version))
        self.sizes: dict[str, tuple[Version, int]] = {group: (Version.parse(version), replicas)}
        self.history: list[str] = []
        self.outages: list[str] = []
        self._router = InMemoryRouter(self, {group: 1})

    @property
    def router(self) -> InMemoryRouter:
        return self._router

    def record(self, change: str) -> None:
        self.history.append(change)
        weights = self._router.weights()
        if not any(size for name, (_, size) in self.sizes.items() if weights.get(name)):
            self.outages.append(change)

    def groups(self) -> list[InstanceGroup]:
        weights = self._router.weights()
        return [
            InstanceGroup(
                name=name,
                version=version,
                instances=tuple(
                    Instance(
                        f"{name}-{i}", name, str(version), "", ready=True, alive=True, routed=name in weights
                    )
                    for i in range(size)
                ),
            )
            for name, (version, size) in sorted(self.sizes.items(), key=lambda item: item[1][0])
        ]

    def group_name(self, version: Version) -> str:
        return f"gitlab-{version}"

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        if self.sizes.get(group) != (version, replicas):
            self.sizes[group] = (version, replicas)
            self.record(f"scale {group} {replicas}")
        return next(g for g in self.groups() if g.name == group)

    def remove_group(self, group: str) -> None:
        if group in self.sizes:
            del self.sizes[group]
            self._router._weights.pop(group, None)
            self.record(f"remove {group}")

    def check_health(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


OLD, NEW = "gitlab-16.5.0", "gitlab-16.6.0"


def upgrade_context(platform: InMemoryPlatform, events: list[str]) -> UpgradeContext:
    return UpgradeContext(
        info=INFO,
        target=Target(name="cell-1", platform="in-memory", version="16.5.0"),
        release=Release(version="16.6.0"),
        from_version=Version.parse("16.5.0"),
        platform=platform,
        record_event=lambda kind, message, _data: events.append(f"{kind}: {message}"),
        replicas=3,
        gate_interval=0.01,
    )


@pytest.fixture
def surge_all(example_plugin: Path) -> Any:
    record = get_plugin_manager().strategy("surge-all")
    return record.factory(record.config(settle_seconds=0.02))


def test_rollout_surges_switches_and_removes_the_old_set(surge_all: Any) -> None:
    platform, events = InMemoryPlatform("16.5.0", 3), []
    ctx = upgrade_context(platform, events)

    surge_all.rollout(ctx)

    assert platform.history == [
        f"route ['{OLD}', '{NEW}']",
        f"scale {NEW} 3",
        f"route ['{NEW}']",
        f"remove {OLD}",
    ]
    assert platform.outages == []
    assert platform.router.weights() == {NEW: 1}
    assert [g.name for g in platform.groups()] == [NEW]
    assert f"step-started: start {NEW} beside {OLD}" in events
    assert events[-1] == f"step-finished: remove {OLD}"


def test_rollout_run_again_does_only_what_is_left(surge_all: Any) -> None:
    platform, events = InMemoryPlatform("16.5.0", 3), []
    ctx = upgrade_context(platform, events)
    surge_all.rollout(ctx)
    platform.history.clear()

    surge_all.rollout(ctx)

    assert platform.history == []
    assert platform.router.weights() == {NEW: 1}


@pytest.mark.parametrize("interrupted_after", ["nothing", "surge", "switch", "everything"])
def test_rollback_puts_the_old_set_back_from_any_state(surge_all: Any, interrupted_after: str) -> None:
    platform, events = InMemoryPlatform("16.5.0", 3), []
    ctx = upgrade_context(platform, events)
    if interrupted_after in ("surge", "switch"):
        platform.router.set_weights({OLD: 1, NEW: 1})
        platform.scale(NEW, Version.parse("16.6.0"), 3)
    if interrupted_after == "switch":
        platform.router.set_weights({NEW: 1})
    if interrupted_after == "everything":
        surge_all.rollout(ctx)

    surge_all.rollback(ctx)

    assert platform.router.weights() == {OLD: 1}
    assert [(g.name, g.replicas) for g in platform.groups()] == [(OLD, 3)]
    assert platform.outages == []


def test_plan_lists_the_steps(surge_all: Any) -> None:
    ctx = upgrade_context(InMemoryPlatform("16.5.0", 3), [])

    steps = surge_all.plan(ctx)

    assert [(s.phase, s.action) for s in steps] == [
        ("rollout", "start"),
        ("rollout", "route"),
        ("rollout", "settle"),
        ("rollout", "switch"),
        ("rollout", "remove"),
    ]
    assert steps[0].detail == f"{NEW}: 3 instances of 16.6.0"
