"""One upgrade per target, under a race: two ``zdu upgrade`` released at the same instant, many times.

Each process says it is ready (a file of its own), then waits for a ``go`` file the test creates once
both are ready, and then execs ``zdu upgrade`` of the same ``sim`` cell: both start within a
millisecond of each other. Exactly one may run; the other must exit 3 (the target is busy),
whichever loses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from zdu.console import EXIT_BUSY
from zdu.journal import Journal

ZDU = str(Path(sys.executable).parent / "zdu")
ROUNDS = int(os.environ.get("ZDU_RACE_ROUNDS", "20"))

#: ready-file, go-file, command...: say ready, wait for go, become the command
BARRIER = """
import os, sys, time
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.0002)
os.execv(sys.argv[3], sys.argv[3:])
"""

CONFIG = """
[target]
name = "cell"
platform = "sim"
version = "16.5.0"

[platform]
replicas = 2
start_seconds = 5
drain_seconds = 5
time_scale = 0.01

[release]
version = "16.6.0"

[strategy]
name = "rolling"

[upgrade]
state_dir = "state"
"""


def _race(directory: Path) -> list[subprocess.CompletedProcess[str]]:
    directory.mkdir()
    config = directory / "cell.toml"
    config.write_text(CONFIG, encoding="utf-8")
    go = directory / "go"
    env = {**os.environ, "ZDU_STATE_DIR": str(directory / "default-state")}
    command = [ZDU, "upgrade", "--json", str(config)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BARRIER, str(directory / f"ready-{n}"), str(go), *command],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    deadline = time.monotonic() + 60
    while not all((directory / f"ready-{n}").exists() for n in range(2)):
        assert time.monotonic() < deadline, "the racers never became ready"
        time.sleep(0.001)
    go.touch()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_two_upgrades_started_at_the_same_instant_one_runs_the_other_exits_3(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        directory = tmp_path / f"round-{round_}"
        results = _race(directory)
        codes = sorted(r.returncode for r in results)
        detail = "\n".join(f"exit {r.returncode}: {r.stderr[-600:]}" for r in results)
        assert codes == [0, EXIT_BUSY], f"round {round_}:\n{detail}"
        loser = next(r for r in results if r.returncode == EXIT_BUSY)
        assert "cell" in loser.stderr and "Traceback" not in loser.stderr, loser.stderr
        upgrades = Journal(directory / "state" / "journal.sqlite").upgrades()
        assert [u.status.value for u in upgrades] == ["succeeded"], f"round {round_}: {upgrades}"
