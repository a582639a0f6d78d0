"""An upgrade uses a strategy from a third-party plugin installed with pip (tests/data/zdu-example-plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdu.model import UpgradeStatus
from zdu.upgrade import Upgrade

from .conftest import FROM, TO, Traffic, write_config

pytestmark = pytest.mark.slow


def test_surge_all_from_an_installed_plugin_upgrades_a_real_fleet(
    example_plugin: Path, tmp_path: Path, fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase_log = tmp_path / "phases.log"
    monkeypatch.setenv("ZDU_EXAMPLE_PHASE_LOG", str(phase_log))
    config = write_config(tmp_path, strategy="surge-all", options={"settle_seconds": 0.5})
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade = Upgrade.from_config(config)
    assert upgrade.manager.provider_of(upgrade.config.strategy.record) == "zdu-example-plugin"
    report = upgrade.run()
    responses = traffic.stop()
    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    assert report.value("failed_requests") == 0
    assert traffic.failures() == [] and responses[-1].version == TO
    assert phase_log.read_text().split() == [
        "preflight",
        "migrate(pre)",
        "prepare",
        "rollout",
        "verify",
        "finalize",
        "migrate(post)",
        "cleanup",
    ]


def test_surge_all_rolls_back_a_5xx_release(example_plugin: Path, tmp_path: Path, fleet) -> None:
    config = write_config(tmp_path, strategy="surge-all", fault="5xx")
    platform = fleet(config)
    report = Upgrade.from_config(config).run()
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    fresh = type(platform)(platform.config, platform.env)
    assert [(str(g.version), g.ready) for g in fresh.groups()] == [(FROM, 3)]
