"""The canary strategy on the local fleet: steps of request share, a pause until `zdu promote`, rollback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from zdu.model import UpgradeStatus
from zdu.upgrade import Upgrade

from .conftest import FROM, TO, Traffic, write_config

pytestmark = pytest.mark.slow


def canary_config(tmp_path: Path, steps: str, **kwargs) -> Path:
    """A cell.toml with the canary strategy and ``steps`` (a TOML array of inline tables)."""
    path = write_config(tmp_path, strategy="canary", **kwargs)
    text = path.read_text()
    path.write_text(text.replace('name = "canary"\n', f'name = "canary"\nsteps = {steps}\n', 1))
    return path


def wait_for_event(upgrade: Upgrade, kind: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        upgrades = upgrade.journal.upgrades(limit=1)
        if upgrades and any(e.kind == kind for e in upgrade.journal.events(upgrades[0].id)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event within {timeout:g}s")


def test_a_canary_pauses_until_promoted_and_loses_nothing(tmp_path, fleet):
    config = canary_config(
        tmp_path,
        '[{weight = 20, pause = "1s"}, {pause = {}}, {weight = 60}, {weight = 100}]',
        options={"preview_seconds": 1.0},
    )
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade = Upgrade.from_config(config)
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("report", upgrade.run()))
    runner.start()
    try:
        wait_for_event(upgrade, "paused-for-promotion")
        paused_at = len(traffic.responses)
        time.sleep(2.0)  # paused at 20%: users reach both versions, the upgrade waits for a person
        during = Counter(r.version for r in traffic.responses[paused_at:])
        assert during[FROM] > during[TO] > 0, during
        assert runner.is_alive()
        upgrade_id = upgrade.journal.upgrades(limit=1)[0].id
        promoted = subprocess.run(
            [str(Path(sys.executable).parent / "zdu"), "promote", upgrade_id, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert promoted.returncode == 0, promoted.stderr
        runner.join(timeout=120)
    finally:
        upgrade.cancel.set()
        runner.join(timeout=60)
        upgrade.close()
    report = outcome["report"]
    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    assert report.value("failed_requests") == 0
    responses = traffic.stop()
    assert [r for r in responses if r.status != 200] == []
    assert responses[-1].version == TO
    kinds = [e.kind for e in upgrade.journal.events(report.upgrade_id)]
    assert kinds.index("paused-for-promotion") < kinds.index("promote") < kinds.index("promoted")
    assert [g.version.text or str(g.version) for g in platform.groups()] == [TO]
    # promoting a finished upgrade is refused, naming it
    again = subprocess.run(
        [str(Path(sys.executable).parent / "zdu"), "promote", report.upgrade_id, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode != 0 and "nothing to promote" in " ".join(again.stderr.split())


def test_without_analysis_before_users_the_first_step_limits_the_harm(tmp_path, fleet):
    config = canary_config(
        tmp_path,
        '[{weight = 10, pause = "3s"}, {weight = 100}]',
        options={"preview_seconds": 0},
        fault="5xx-share:0.5",
    )
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade = Upgrade.from_config(config)
    try:
        report = upgrade.run()
    finally:
        upgrade.close()
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    # users met the bad release only through the 10% step, and the gate stopped it there
    assert report.value("failed_requests") > 0
    events = upgrade.journal.events(report.upgrade_id)
    steps = [e.message for e in events if e.kind == "step-started"]
    assert not any("100%" in step for step in steps), steps
    kinds = [e.kind for e in events]
    assert kinds.index("rollback") < kinds.index("restored")
    responses = traffic.stop()
    assert responses[-1].version == FROM
    assert [(g.version.text or str(g.version), g.ready) for g in platform.groups()] == [(FROM, 3)]
