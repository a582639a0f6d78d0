"""The local platform's upgrade lock holds across processes (a flock in the target's state directory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zdu.errors import TargetBusy
from zdu.model import Target
from zdu.platform import PlatformEnv
from zdu_local.config import LocalPlatformConfig
from zdu_local.platform import LocalPlatform

HOLDER = """
import sys, time
from pathlib import Path
from zdu.model import Target
from zdu.platform import PlatformEnv
from zdu_local.config import LocalPlatformConfig
from zdu_local.platform import LocalPlatform

target = Target(name="locked", platform="local", version="16.5.0")
env = PlatformEnv(target=target, state_dir=Path(sys.argv[1]))
with LocalPlatform(LocalPlatformConfig(), env).hold_lock("pipeline 42"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_the_upgrade_lock_is_held_across_processes_and_names_its_holder(tmp_path):
    env = PlatformEnv(target=Target(name="locked", platform="local", version="16.5.0"), state_dir=tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = LocalPlatform(LocalPlatformConfig(), env).hold_lock("pipeline 43")
        with pytest.raises(TargetBusy, match="being upgraded by pipeline 42"), lock:
            pass
    finally:
        holder.kill()  # a crashed holder: the kernel releases its flock
        holder.wait()
    with LocalPlatform(LocalPlatformConfig(), env).hold_lock("pipeline 43"):
        pass
