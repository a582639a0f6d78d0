"""Honest outcomes at the command line: an upgrade to the version already serving, `zdu local up` again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FROM, TO, write_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")


def zdu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZDU, *args], capture_output=True, text=True, timeout=180)


def test_a_second_upgrade_is_a_no_op_and_local_up_says_what_the_fleet_runs(tmp_path):
    config = write_config(tmp_path, probe={"dry_run": True})
    up = zdu("local", "up", str(config))
    assert up.returncode == 0, up.stderr
    try:
        assert "already up" not in up.stderr
        first = zdu("upgrade", str(config), "--json")
        assert first.returncode == 0, first.stderr

        again = zdu("upgrade", str(config))
        up_again = zdu("local", "up", str(config))
        upgrades = json.loads(zdu("status", "--config", str(config), "--json").stdout)["upgrades"]
    finally:
        zdu("local", "down", str(config))
    assert again.returncode == 0, again.stderr
    assert f"e2e already serves {TO}: nothing to upgrade" in again.stdout
    assert [u["id"] for u in upgrades] == [json.loads(first.stdout)["upgrade_id"]]  # nothing recorded
    assert up_again.returncode == 0 and up_again.stdout.strip() == up.stdout.strip()
    assert f"serving {TO}, not target.version {FROM}" in " ".join(up_again.stderr.split())
