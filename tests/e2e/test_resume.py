"""An upgrade whose process is killed (SIGKILL) mid-rollout is resumed, or rolled back, from the journal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import FROM, TO, Traffic, write_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")


def zdu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZDU, *args], capture_output=True, text=True, timeout=180)


def kill_mid_rollout(config: Path, state: Path) -> str:
    """Start `zdu upgrade`, SIGKILL it once old and new instances run together; return the upgrade id."""
    process = subprocess.Popen(
        [ZDU, "upgrade", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            fleet = json.loads((state / "targets" / "e2e" / "state.json").read_text())
            versions = [i["version"] for i in fleet["instances"]]
            if versions.count(TO) >= 2 and versions.count(FROM) >= 1:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the rollout never reached a mix of old and new instances")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    upgrades = json.loads(zdu("status", "--config", str(config), "--json").stdout)["upgrades"]
    assert [u["status"] for u in upgrades] == ["interrupted"]
    assert upgrades[0]["phase"] == "rollout"
    return str(upgrades[0]["id"])


def served_versions(config: Path) -> list[tuple[str, int]]:
    from zdu.config import load_config  # noqa: PLC0415
    from zdu.platform import PlatformEnv  # noqa: PLC0415
    from zdu.registry import get_plugin_manager  # noqa: PLC0415
    from zdu_local.platform import LocalPlatform  # noqa: PLC0415

    loaded = load_config(config, get_plugin_manager())
    platform = LocalPlatform(loaded.platform.options, PlatformEnv(loaded.target, loaded.target_state_dir))
    return [(str(g.version), g.ready) for g in platform.groups()]


def test_resume_finishes_an_upgrade_killed_mid_rollout(tmp_path, fleet):
    config = write_config(tmp_path)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade_id = kill_mid_rollout(config, tmp_path / "state")
    busy = zdu("upgrade", str(config))
    assert busy.returncode == 3 and upgrade_id in busy.stderr  # the target stays locked
    # the journal lives in the config's state_dir: without --config it is found (the journals upgrades
    # began in are remembered); an id no journal holds is refused, naming the journals searched
    unknown = zdu("resume", "20000101-000000-abcdef", "--json")
    assert unknown.returncode == 2 and "no upgrade '20000101-000000-abcdef' in the journals" in unknown.stderr
    assert str(tmp_path / "state" / "journal.sqlite") in unknown.stderr
    resumed = zdu("resume", upgrade_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert served_versions(config) == [(TO, 3)]
    traffic.stop()
    assert traffic.failures() == []  # killing zdu itself never took the fleet down


def test_rollback_of_an_upgrade_killed_mid_rollout(tmp_path, fleet):
    config = write_config(tmp_path)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade_id = kill_mid_rollout(config, tmp_path / "state")
    rolled = zdu("rollback", upgrade_id, "--config", str(config), "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["status"] == "rolled_back"
    assert served_versions(config) == [(FROM, 3)]
    traffic.stop()
    assert traffic.failures() == []
    again = zdu("rollback", upgrade_id, "--config", str(config))
    assert again.returncode == 2 and "nothing to roll back" in again.stderr
