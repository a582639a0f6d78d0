"""``zdu local router-upgrade CONFIG`` from a shell: a new nginx master on the same port, the old one gone."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from .conftest import write_config
from .test_command_line import zdu

pytestmark = pytest.mark.slow


def test_router_upgrade_from_the_command_line(tmp_path):
    config = write_config(tmp_path, replicas=1)
    up = zdu("local", "up", str(config))
    assert up.returncode == 0, up.stderr
    state_path = tmp_path / "state" / "targets" / "e2e" / "state.json"
    try:
        before = json.loads(state_path.read_text())["router"]["master_pid"]
        upgraded = zdu("local", "router-upgrade", str(config))
        assert upgraded.returncode == 0, upgraded.stderr
        after = json.loads(state_path.read_text())["router"]["master_pid"]
        assert after != before and f"nginx master {before} -> {after}" in upgraded.stdout
        deadline = time.monotonic() + 10
        while psutil.pid_exists(before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not psutil.pid_exists(before) or psutil.Process(before).status() == psutil.STATUS_ZOMBIE
        refused = zdu("local", "router-upgrade", str(config), "--nginx", str(tmp_path / "no-such-nginx"))
        assert refused.returncode != 0 and "nginx not found" in refused.stderr
    finally:
        down = zdu("local", "down", str(config))
    assert down.returncode == 0, down.stderr
