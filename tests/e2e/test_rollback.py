"""The orchestrator rolls back a bad release, and the old version serves throughout."""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from zdu.errors import TargetBusy
from zdu.model import Phase, UpgradeStatus
from zdu.upgrade import Upgrade

from .conftest import FROM, TO, Traffic, write_config

pytestmark = pytest.mark.slow


def assert_back_on_old_version(platform, traffic):
    platform = type(platform)(platform.config, platform.env)  # a fresh view of the fleet's state
    groups = platform.groups()
    assert [(g.version.text or str(g.version), g.ready) for g in groups] == [(FROM, 3)]
    assert {k: v for k, v in platform.router.weights().items() if v} == {
        platform.group_name(groups[0].version): 1
    }
    responses = traffic.stop()
    assert responses, "the traffic loop sent nothing"
    assert responses[-1].version == FROM
    # the old version answered all along: never more than a second without an answer from it
    assert traffic.longest_gap_without_old_version(FROM) < 1.0


def run(config_path):
    upgrade = Upgrade.from_config(config_path)
    try:
        return upgrade, upgrade.run()
    finally:
        upgrade.close()


def test_rolls_back_when_a_new_instance_never_becomes_ready(tmp_path, fleet):
    config = write_config(tmp_path, fault="never-ready", ready_timeout=2.0)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade, report = run(config)
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    assert "did not become ready" in (report.error or "") or "ready" in (report.error or "")
    assert traffic.failures() == []
    assert_back_on_old_version(platform, traffic)
    kinds = [e.kind for e in upgrade.journal.events(report.upgrade_id)]
    assert "rollback" in kinds and "phase-finished" in kinds
    assert report.value("failed_requests") == 0


def test_rolls_back_when_a_new_instance_is_killed_mid_rollout(tmp_path, fleet):
    config = write_config(tmp_path, probe={"max_failed_requests": 1000})
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    killed: list[int] = []

    def kill_first_new_instance() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            watcher = type(platform)(platform.config, platform.env)  # another process's view: the state file
            for group in watcher.groups():
                if str(group.version) == TO:
                    for instance in group.instances:
                        if instance.ready and instance.routed:
                            pid = int(psutil.Process(_pid_of(watcher, instance.id)).pid)
                            psutil.Process(pid).kill()  # SIGKILL, a real crash
                            killed.append(pid)
                            return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_new_instance)
    killer.start()
    _, report = run(config)
    killer.join()
    assert killed, "no new instance was seen to kill"
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    assert "unhealthy" in (report.error or "")
    assert_back_on_old_version(platform, traffic)


def _pid_of(platform, instance_id: str) -> int:
    for record in platform._store.state.instances:
        if record.id == instance_id:
            return record.pid
    raise AssertionError(f"no instance {instance_id}")


@pytest.mark.parametrize("strategy", ["rolling", "blue-green", "canary"])
def test_rolls_back_when_the_new_version_answers_5xx(tmp_path, fleet, strategy):
    options = {
        "rolling": {},
        "blue-green": {"scale_down_delay": 1.0, "preview_seconds": 1.5},
        "canary": {"preview_seconds": 1.5},
    }[strategy]
    config = write_config(tmp_path, strategy=strategy, options=options, fault="5xx")
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    _, report = run(config)
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    assert "failed" in (report.error or "")
    assert_back_on_old_version(platform, traffic)
    if strategy in ("blue-green", "canary"):
        # the preview analysis caught it: users never reached the bad set
        assert report.value("failed_requests") == 0
    else:
        # the probe saw the bad instance's answers: that is what stopped the rollout
        assert report.value("failed_requests") > 0
    phases = [p for p, _ in report.phases]
    assert str(Phase.MIGRATE_POST) not in phases and str(Phase.ROLLBACK) in phases


def test_a_second_upgrade_of_the_same_target_is_refused(tmp_path, fleet):
    config = write_config(
        tmp_path, strategy="blue-green", options={"scale_down_delay": 3.0, "preview_seconds": 1.0}
    )
    fleet(config)
    first = Upgrade.from_config(config)
    result: list = []
    runner = threading.Thread(target=lambda: result.append(first.run()))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not first.journal.upgrades("e2e"):
            time.sleep(0.05)
        with pytest.raises(TargetBusy, match="e2e"):
            Upgrade.from_config(config).run()
    finally:
        runner.join(60)
        first.close()
    assert result and result[0].status is UpgradeStatus.SUCCEEDED, result[0].summary()
