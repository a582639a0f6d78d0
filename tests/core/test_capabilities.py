"""Platforms as capabilities: what platforms provide, what plugins require, and the check at load."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import zdu.cli
from zdu.config import load_config, structure
from zdu.context import UpgradeContext, UpgradeInfo
from zdu.errors import ConfigError, ZduError
from zdu.migrations import MigrationEnv, Stage
from zdu.model import Release, Target, Version
from zdu.platform import (
    CAPABILITIES,
    COMMAND_HOST,
    OMNIBUS_NODES,
    Platform,
    PlatformEnv,
    platform_provides,
)
from zdu.plugins import MigrationRunnerPlugin, NoConfig, hookimpl
from zdu.registry import ZduPluginManager, get_plugin_manager
from zdu.testing import MemoryPlatform, register_inline, restricted

ZDU = str(Path(sys.executable).parent / "zdu")
OLD, NEW = Version.parse("16.5.0"), Version.parse("16.6.0")


@pytest.fixture(scope="module")
def manager() -> ZduPluginManager:
    return get_plugin_manager()


# -- platforms provide what they declare ---------------------------------------------------------------


def _platform_options(name: str, tmp: Path) -> tuple[dict[str, Any], Path | None]:
    """Options that build each first-party platform without starting or reaching anything."""
    snapshot = tmp / "snapshot.json"
    snapshot.write_text("[]", encoding="utf-8")
    options: dict[str, dict[str, Any]] = {
        "local": {"command": ["true"], "assets_command": ["true"]},
        "sim": {},
        "kubernetes": {"url": "https://gitlab.example.com"},
        "get": {
            "url": "http://127.0.0.1:1",
            "haproxy_socket": str(tmp / "haproxy.sock"),
            "ansible_dir": str(tmp),
            "inventory": str(tmp / "inventory"),
            "inventory_vars": str(tmp / "vars.yml"),
        },
    }
    return options[name], snapshot if name == "kubernetes" else None


@pytest.mark.parametrize("name", ["local", "sim", "kubernetes", "get"])
def test_a_first_party_platform_implements_exactly_what_it_provides(
    manager: ZduPluginManager, name: str, tmp_path: Path
) -> None:
    record = manager.platform(name)
    options, snapshot = _platform_options(name, tmp_path)
    env = PlatformEnv(Target(name="t", platform=name, version=str(OLD)), tmp_path / name, None, snapshot)
    platform = record.factory(structure(options, record.config, "platform"), env)
    try:
        assert isinstance(platform, Platform)
        assert record.provides, f"{name} declares no capability"
        for capability in record.provides:
            assert CAPABILITIES[capability].provided_by(platform), f"{name} does not implement {capability}"
        assert platform_provides(platform) == record.provides
    finally:
        platform.close()


def test_the_get_platform_has_no_instance_groups_and_local_no_omnibus_nodes(
    manager: ZduPluginManager,
) -> None:
    assert "instance-groups" not in manager.platform("get").provides
    assert "omnibus-nodes" not in manager.platform("local").provides
    assert "command-host" in manager.platform("kubernetes").provides


def test_every_first_party_record_names_known_capabilities(manager: ZduPluginManager) -> None:
    declared = [
        *(r.provides for r in manager.platforms().values()),
        *(r.requires for r in manager.strategies().values()),
        *(r.requires for r in manager.traffic_layers().values()),
        *(r.requires for r in manager.migration_runners().values()),
    ]
    unknown = set().union(*declared) - set(CAPABILITIES)
    assert not unknown


def test_a_record_refuses_a_bad_capability_name() -> None:
    with pytest.raises(ValueError, match="capability name 'Instance Groups'"):
        MigrationRunnerPlugin(name="x", summary="x", factory=lambda c, e: None, requires={"Instance Groups"})  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="got the string"):
        MigrationRunnerPlugin(name="x", summary="x", factory=lambda c, e: None, requires="affinity")  # type: ignore[arg-type,return-value]


# -- strategies and layers run with exactly what they require ------------------------------------------


def _context(platform: Any, strategy: str, layers: tuple[str, ...] = ()) -> UpgradeContext:
    return UpgradeContext(
        info=UpgradeInfo("u1", "t", str(OLD), str(NEW), strategy, layers),
        target=Target(name="t", platform="memory", version=str(OLD)),
        release=Release(NEW),
        from_version=OLD,
        platform=platform,
        record_event=lambda *_: None,
        replicas=2,
        gate_interval=0.01,
    )


_FAST = {
    "blue-green": {"scale_down_delay": 0, "preview_seconds": 0.01},
    "canary": {"steps": [{"weight": 50}], "preview_seconds": 0.01},
}
_INSTANCE_STRATEGIES = ["recreate", "rolling", "blue-green", "canary"]


def _strategy(manager: ZduPluginManager, name: str) -> Any:
    record = manager.strategy(name)
    return record.factory(structure(_FAST.get(name, {}), record.config, "strategy")), record.requires


@pytest.mark.parametrize("name", _INSTANCE_STRATEGIES)
def test_a_strategy_upgrades_and_rolls_back_with_only_its_requirements(
    manager: ZduPluginManager, name: str
) -> None:
    strategy, requires = _strategy(manager, name)
    fleet = MemoryPlatform(OLD, replicas=2)
    platform = restricted(fleet, requires)
    assert platform_provides(platform) == requires
    ctx = _context(platform, name)
    assert strategy.plan(ctx)
    strategy.rollout(ctx)
    strategy.finalize(ctx)
    assert fleet.serving_versions() == [NEW]
    assert [g.version for g in fleet.groups()] == [NEW]

    fleet = MemoryPlatform(OLD, replicas=2)
    ctx = _context(restricted(fleet, requires), name)
    strategy.rollout(ctx)
    strategy.rollback(ctx)
    assert fleet.serving_versions() == [OLD]


@pytest.mark.parametrize("name", _INSTANCE_STRATEGIES)
def test_a_strategy_without_one_of_its_requirements_is_stopped(manager: ZduPluginManager, name: str) -> None:
    strategy, requires = _strategy(manager, name)
    for missing in sorted(requires):
        platform = restricted(MemoryPlatform(OLD, replicas=2), requires - {missing})
        if missing in platform_provides(platform):  # implied by another one (affinity needs groups)
            continue
        ctx = _context(platform, name)
        with pytest.raises(ZduError, match=repr(missing)):
            strategy.plan(ctx)
            strategy.rollout(ctx)
            strategy.rollback(ctx)


@pytest.mark.parametrize("name", ["sticky-nginx", "assets-shim"])
def test_a_layer_runs_with_only_its_requirements(manager: ZduPluginManager, name: str) -> None:
    record = manager.traffic_layer(name)
    layer = record.factory(record.config())
    fleet = MemoryPlatform(OLD, replicas=2)
    platform = restricted(fleet, record.requires)
    assert platform_provides(platform) == record.requires
    ctx = _context(platform, "recreate", (name,))
    assert layer.plan(ctx)
    layer.prepare(ctx)
    assert fleet.router.affinity or fleet.router.assets_routed
    layer.finalize(ctx)
    layer.rollback(ctx)
    assert not fleet.router.affinity and not fleet.router.assets_routed


def test_the_get_strategy_runs_with_omnibus_nodes_only(manager: ZduPluginManager) -> None:
    strategy, requires = _strategy(manager, "get")
    assert requires == {OMNIBUS_NODES}
    fleet = MemoryPlatform(OLD, replicas=2, omnibus=True)
    ctx = _context(restricted(fleet, requires), "get")
    assert any("rails-2" in step.detail for step in strategy.plan(ctx))
    strategy.rollout(ctx)
    assert fleet.serving_versions() == [NEW] and fleet.inventory_version == NEW
    assert set(fleet.nodes.values()) == {NEW}
    # GET installs without allowing a downgrade: the rollback is refused before it changes anything
    with pytest.raises(ZduError, match="refused before any change"):
        strategy.rollback(ctx)
    assert fleet.serving_versions() == [NEW] and fleet.inventory_version == NEW


def test_the_get_post_deployment_runner_runs_on_the_deploy_node(manager: ZduPluginManager) -> None:
    record = manager.migration_runner("get-post-deployment")
    fleet = MemoryPlatform(OLD, replicas=2, omnibus=True)
    platform = restricted(fleet, record.requires)
    env = MigrationEnv(Target(name="t", platform="memory", version=str(OLD)), platform, Path("."))
    runner = record.factory(record.config(), env)
    assert runner.pending(Stage.POST) == ["playbooks/post_deployment_migrations.yml on rails-1"]
    runner.run(Stage.POST, _context(platform, "get"))
    assert fleet.playbooks == [("post-deployment migrations on rails-1", "rails-1")]


def test_gitlab_rake_runs_on_the_platforms_command_host_when_it_provides_one(
    manager: ZduPluginManager,
) -> None:
    record = manager.migration_runner("gitlab-rake")
    fleet = MemoryPlatform(OLD, replicas=2)
    target = Target(name="t", platform="memory", version=str(OLD))
    with_host = record.factory(
        record.config(), MigrationEnv(target, restricted(fleet, {COMMAND_HOST}), Path("."))
    )
    without = record.factory(record.config(), MigrationEnv(target, restricted(fleet, ()), Path(".")))
    assert with_host.executor is fleet.command_executor
    assert without.executor is not fleet.command_executor


# -- a pairing that lacks a capability is refused at load ----------------------------------------------


def _config(strategy: str, platform: str = "local", **extra: Any) -> dict[str, Any]:
    return {
        "target": {"name": "cell", "platform": platform, "version": str(OLD)},
        "platform": {"command": ["true"]} if platform == "local" else {},
        "release": {"version": str(NEW)},
        "strategy": {"name": strategy},
        **extra,
    }


def test_load_refuses_the_get_strategy_on_the_local_platform(manager: ZduPluginManager) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(_config("get"), manager)
    assert refused.value.problems == [
        "strategy.name: 'get' requires the platform capability 'omnibus-nodes', which target.platform "
        "'local' does not provide (it provides: affinity, asset-store, instance-groups, preview-route, "
        "scale-together, traffic-split)"
    ]


def test_load_accepts_a_pairing_that_has_every_capability(manager: ZduPluginManager) -> None:
    data = _config("canary")
    data["strategy"]["layers"] = ["sticky-nginx", "assets-shim"]
    config = load_config(data, manager)
    assert [layer.name for layer in config.layers] == ["sticky-nginx", "assets-shim"]


def _write(path: Path, data: dict[str, Any]) -> Path:
    def value(v: Any) -> str:
        return json.dumps(v)

    lines = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(v)}" for key, v in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _get_platform_options(tmp: Path) -> dict[str, Any]:
    return {
        "url": "http://127.0.0.1:1",
        "haproxy_socket": str(tmp / "haproxy.sock"),
        "ansible_dir": str(tmp),
        "inventory": str(tmp / "inventory"),
        "inventory_vars": str(tmp / "vars.yml"),
    }


@pytest.mark.parametrize(
    ("command", "case", "line"),
    [
        (
            "plan",
            "get-on-local",
            "strategy.name: 'get' requires the platform capability 'omnibus-nodes', which target.platform "
            "'local' does not provide",
        ),
        (
            "upgrade",
            "sticky-on-get",
            "strategy.layers: 'sticky-nginx' requires the platform capabilities 'affinity', "
            "'instance-groups', which target.platform 'get' does not provide (it provides: omnibus-nodes)",
        ),
        (
            "upgrade",
            "get-runner-on-local",
            "migrations.name: 'get-post-deployment' requires the platform capability 'omnibus-nodes', which "
            "target.platform 'local' does not provide",
        ),
    ],
)
def test_the_command_refuses_a_pairing_with_exit_2_and_one_line(
    command: str, case: str, line: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    if case == "get-on-local":
        data = _config("get")
    elif case == "sticky-on-get":
        data = _config("get", platform="get")
        data["platform"] = _get_platform_options(tmp_path)
        data["strategy"]["layers"] = ["sticky-nginx"]
    else:
        data = _config("rolling", migrations={"name": "get-post-deployment"})
    data["upgrade"] = {"state_dir": str(state)}
    path = _write(tmp_path / "cell.toml", data)
    done = subprocess.run([ZDU, command, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [text for text in done.stderr.splitlines() if text.strip()]
    assert len(lines) == 1, done.stderr
    assert line in lines[0]
    assert not (state / "journal.sqlite").exists()  # nothing ran, nothing was recorded


@attrs.frozen
class _NeedsHost:
    @hookimpl
    def zdu_migration_runners(self) -> Iterator[MigrationRunnerPlugin[Any]]:
        yield MigrationRunnerPlugin(
            name="remote-rake",
            summary="runs its commands on the platform's command host only",
            config=NoConfig,
            factory=lambda config, env: env.command_host,  # type: ignore[arg-type,return-value]
            requires={COMMAND_HOST},
        )


def test_the_command_refuses_a_runner_that_needs_a_command_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def manager_with_runner(**kwargs: Any) -> ZduPluginManager:
        manager = get_plugin_manager(**kwargs)
        register_inline(manager, _NeedsHost(), "needs-host")
        return manager

    monkeypatch.setattr(zdu.cli, "get_plugin_manager", manager_with_runner)
    data = _config("rolling", migrations={"name": "remote-rake"})
    data["upgrade"] = {"state_dir": str(tmp_path / "state")}
    path = _write(tmp_path / "cell.toml", data)
    with pytest.raises(SystemExit) as exited:
        zdu.cli.main(["plan", str(path)])
    assert exited.value.code == 2
    lines = [text for text in capsys.readouterr().err.splitlines() if text.strip()]
    assert lines == [
        "zdu: error: migrations.name: 'remote-rake' requires the platform capability 'command-host', which "
        "target.platform 'local' does not provide (it provides: affinity, asset-store, instance-groups, "
        "preview-route, scale-together, traffic-split)"
    ]
