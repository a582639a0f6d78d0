"""On a terminal, ``zdu upgrade`` keeps a live line of the probe's requests and failures.

The terminal is a real one: tmux runs the command, and the screen is read with capture-pane while
the upgrade runs. The same upgrade through a pipe prints no such line (see test_report_and_cli).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import write_config
from tests.e2e.observability import TOLERANT

pytestmark = pytest.mark.slow

LIVE = re.compile(r"(\d+) requests, (\d+) failed, (\d+) asset errors")


def test_the_spinner_line_counts_requests_and_failures_as_they_come(tmp_path: Path, fleet) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    config = write_config(
        tmp_path, strategy="rolling", options={"max_surge": 1, "max_unavailable": 0}, probe=TOLERANT
    )
    fleet(config)
    session = f"zdu-live-{tmp_path.name}"[:60]
    done = tmp_path / "done"
    command = (
        f"{shlex.quote(sys.executable)} -c 'from zdu.cli import main; main()' "
        f"upgrade {shlex.quote(str(config))} > {shlex.quote(str(tmp_path / 'stdout'))}; "
        f"touch {shlex.quote(str(done))}"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", command], check=True, timeout=10
    )
    seen: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, timeout=10
            ).stdout
            seen += [(int(m.group(1)), int(m.group(2))) for m in LIVE.finditer(screen)]
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
    assert done.exists(), "the upgrade did not end in time"
    assert "succeeded" in (tmp_path / "stdout").read_text()
    assert len(seen) >= 2, "no live line of requests on the terminal"
    counts = [requests for requests, _ in seen]
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0  # it grows as the upgrade goes
    assert all(failed == 0 for _, failed in seen)
