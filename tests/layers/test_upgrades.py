"""Each traffic layer with each rollout strategy, end to end: real nginx, instances and browser-like traffic.

The test runs its own ``http`` probe beside the upgrade's (browser-like clients with cookie jars, new
visitors arriving during the rollout) and reads every request it recorded, so that it can tell which
version rendered the page an asset error belongs to.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.nginx_check import nginx_t
from zdu.config import load_config
from zdu.errors import PreflightError
from zdu.model import UpgradeStatus, Version
from zdu.probe import ProbeContext
from zdu.registry import get_plugin_manager
from zdu.upgrade import Upgrade
from zdu_demo.demo_app import asset_hash
from zdu_local.platform import LocalPlatform
from zdu_probes.http import HttpProbe, HttpProbeConfig, RequestKind, RequestRecord

from ..e2e.conftest import FROM, TO, write_config

pytestmark = pytest.mark.slow


class Watch:
    """Users' traffic (an http probe of the test's own) and nginx's master pid, during an upgrade."""

    def __init__(self, config_path: Path, platform: LocalPlatform) -> None:
        config = load_config(config_path, get_plugin_manager())
        self.platform = platform
        self.probe = HttpProbe(
            HttpProbeConfig(rps=120, clients=12, session_pages=4, max_failed_requests=None), name="users"
        )
        self.context = ProbeContext(
            url=platform.router.url,
            target=config.target,
            release=config.release,
            from_version=config.target.version,
        )
        self.masters: set[int | None] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch_master, daemon=True)

    def __enter__(self) -> Watch:
        self.masters.add(self.platform.router.master_pid())
        self._thread.start()
        self.probe.start(self.context)
        return self

    def __exit__(self, *exc: object) -> None:
        self.probe.stop()
        self._stop.set()
        self._thread.join(10)
        self.masters.add(self.platform.router.master_pid())

    def _watch_master(self) -> None:
        while not self._stop.wait(0.05):
            self.masters.add(self.platform.router.master_pid())

    @property
    def records(self) -> list[RequestRecord]:
        return self.probe.records()


def page_versions(records: list[RequestRecord]) -> set[str | None]:
    return {r.version for r in records if r.kind is RequestKind.PAGE and r.status == 200}


def asset_errors_of(records: list[RequestRecord], version: str) -> list[RequestRecord]:
    """Asset errors of pages rendered by ``version`` (its assets carry its fingerprint)."""
    return [r for r in records if r.asset_error and asset_hash(version) in r.path]


def assets_of(records: list[RequestRecord], version: str) -> list[RequestRecord]:
    return [r for r in records if r.kind is RequestKind.ASSET and asset_hash(version) in r.path]


def fresh(platform: LocalPlatform) -> LocalPlatform:
    """Another view of the fleet, as the next ``zdu`` command builds it: from state.json."""
    return type(platform)(platform.config, platform.env)


def assert_nginx_accepts(platform: LocalPlatform) -> None:
    done = nginx_t(platform)
    assert done.returncode == 0, done.stderr


def assert_layers_off(platform: LocalPlatform) -> None:
    view = fresh(platform)
    record = view.router.record
    assert (record.affinity, record.asset_grace, record.assets_dir) == (False, (), None)
    served = view.router.routing()
    assert served is not None and served["generation"] == record.generation
    assert (served["affinity"], served["assets"]) == (False, False)
    text = view.router.nginx.conf_path.read_text()
    assert "$cookie_zdu_group" not in text and "location /assets/" not in text
    assert_nginx_accepts(view)


def run(config_path: Path) -> tuple[Upgrade, object]:
    upgrade = Upgrade.from_config(config_path)
    try:
        return upgrade, upgrade.run()
    finally:
        upgrade.close()


OPTIONS = {
    "rolling": {"max_surge": 1, "max_unavailable": 0},
    "blue-green": {"scale_down_delay": 2.0, "preview_seconds": 1.0},
}


@pytest.mark.parametrize("layer", ["sticky-nginx", "assets-shim"])
@pytest.mark.parametrize("strategy", ["rolling", "blue-green"])
def test_a_layer_upgrades_without_a_failed_request_or_an_asset_error(tmp_path, fleet, strategy, layer):
    config = write_config(tmp_path, strategy=strategy, options=OPTIONS[strategy], layers=[layer])
    platform = fleet(config)
    generation = platform.router.record.generation
    plan = Upgrade.from_config(config).plan()
    assert plan.layers == (layer,)
    phases = [step.phase for step in plan.steps]
    assert "prepare" in phases and phases.index("prepare") < phases.index("rollout")
    with Watch(config, platform) as watch:
        upgrade, report = run(config)
    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    records = watch.records
    assert page_versions(records) == {FROM, TO}, "the users never saw both versions"
    assert assets_of(records, FROM) and assets_of(records, TO)
    assert [r for r in records if r.failed] == []
    assert [r for r in records if r.asset_error] == []
    assert report.value("failed_requests") == 0 and report.value("asset_errors") == 0
    # every change was a graceful reload: one nginx master all along, many configurations
    assert len(watch.masters) == 1 and None not in watch.masters
    assert fresh(platform).router.record.generation > generation + 3
    # after the upgrade: only the new version, and the layer switched off
    view = fresh(platform)
    assert [(str(g.version), g.ready) for g in view.groups()] == [(TO, 3)]
    assert_layers_off(platform)
    steps = [e.message for e in upgrade.journal.events(report.upgrade_id) if e.kind == "step-finished"]
    if layer == "sticky-nginx":
        assert "switch affinity on" in steps and "switch affinity off" in steps
    else:
        assert view.assets is not None
        assert view.assets.versions() == [Version.parse(FROM), Version.parse(TO)]
        assert "route /assets/ to the assets store" in steps and "prune the assets store" in steps


@pytest.mark.parametrize("layer", ["sticky-nginx", "assets-shim"])
def test_a_rollback_mid_rollout_leaves_the_old_version_serving_with_the_layer_off(tmp_path, fleet, layer):
    # the new version answers 500: the upgrade's probe fails the gate after the first new instance
    config = write_config(
        tmp_path, strategy="rolling", options=OPTIONS["rolling"], layers=[layer], fault="5xx"
    )
    platform = fleet(config)
    with Watch(config, platform) as watch:
        _, report = run(config)
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    records = watch.records
    assert any(r.status == 500 and r.version == TO for r in records), "the bad version never took traffic"
    # the clients of the old version (pinned to it, or fed by the store) never missed an asset
    assert assets_of(records, FROM)
    assert asset_errors_of(records, FROM) == []
    assert len(watch.masters) == 1 and None not in watch.masters
    view = fresh(platform)
    assert [(str(g.version), g.ready) for g in view.groups()] == [(FROM, 3)]
    assert {k: v for k, v in view.router.weights().items() if v} == {view.group_name(Version.parse(FROM)): 1}
    assert_layers_off(platform)
    if layer == "assets-shim":
        assert view.assets is not None and Version.parse(FROM) in view.assets.versions()  # nothing pruned


def test_a_rollback_of_blue_green_with_affinity_switches_it_off(tmp_path, fleet):
    # a new instance that never becomes ready: the rollout fails before the switch
    config = write_config(
        tmp_path,
        strategy="blue-green",
        options=OPTIONS["blue-green"],
        layers=["sticky-nginx"],
        fault="never-ready",
        ready_timeout=2.0,
    )
    platform = fleet(config)
    with Watch(config, platform) as watch:
        _, report = run(config)
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    records = watch.records
    assert page_versions(records) == {FROM}
    assert [r for r in records if r.failed or r.asset_error] == []
    assert len(watch.masters) == 1 and None not in watch.masters
    assert_layers_off(platform)


def test_assets_shim_refuses_a_platform_without_an_assets_store_before_changing_anything(tmp_path, fleet):
    config = write_config(tmp_path, layers=["assets-shim"], platform={"assets_command": []})
    platform = fleet(config)
    generation = platform.router.record.generation
    with pytest.raises(PreflightError, match=r"assets-shim needs an assets store.*platform 'local'"):
        Upgrade.from_config(config).plan()
    _, report = run(config)
    assert report.status is UpgradeStatus.FAILED
    assert "assets-shim needs an assets store" in (report.error or "")
    view = fresh(platform)
    assert [str(g.version) for g in view.groups()] == [FROM]
    assert view.router.record.generation == generation
