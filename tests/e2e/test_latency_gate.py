"""A release that answers, but slowly: the latency gate stops the rollout and the old version serves on."""

from __future__ import annotations

import pytest

from zdu.model import UpgradeStatus
from zdu.upgrade import Upgrade

from .conftest import FROM, Traffic, write_config

pytestmark = pytest.mark.slow


def test_rolls_back_when_the_new_version_is_slow(tmp_path, fleet):
    # the old version answers in a few milliseconds; the new one takes 400 ms more for every request
    config = write_config(tmp_path, fault="slow:400", probe={"max_p99_ms": 250})
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade = Upgrade.from_config(config)
    try:
        report = upgrade.run()
    finally:
        upgrade.close()
    responses = traffic.stop()
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    assert "max_p99_ms 250" in (report.error or ""), report.error
    # nothing failed: slow is not broken, but it is not let through either
    assert report.value("failed_requests") == 0 and traffic.failures() == []
    fresh = type(platform)(platform.config, platform.env)
    assert [(str(g.version), g.ready) for g in fresh.groups()] == [(FROM, 3)]
    assert responses[-1].version == FROM
