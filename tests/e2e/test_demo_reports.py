"""``zdu demo --html DIR``: one HTML report per scenario and an index, and ids that can be looked up.

Two scenarios of the demo (one that loses requests, one that does not) on a real fleet; the user's
state directory is the test's own, so ``zdu report ID`` afterwards finds the demo's journal the way a
user's would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_writes_a_report_per_scenario_and_its_ids_can_be_looked_up(tmp_path: Path) -> None:
    env = {**os.environ, "ZDU_STATE_DIR": str(tmp_path / "state")}
    zdu = [sys.executable, "-c", "from zdu.cli import main; main()"]
    out = tmp_path / "reports"
    demo = subprocess.run(
        [
            *zdu,
            "demo",
            "--scenario",
            "recreate",
            "--scenario",
            "rolling",
            "--no-independent",
            "--rps",
            "60",
            "--streams",
            "0",
            "--sockets",
            "0",
            "--html",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    told = re.search(
        r"the demo's upgrades are in the journal (\S+): 'zdu report ID' shows one \(([^)]*)\)", demo.stderr
    )
    assert told, demo.stderr[-2000:]
    journal = Path(told.group(1))
    assert journal.is_file() and journal.parent.parent == tmp_path / "state" / "demos"  # one per run
    ids = told.group(2).split(", ")
    assert len(ids) == 2
    # the probe's warnings (recreate fails requests) are summed up, not interleaved with progress
    assert "WARNING" not in demo.stderr

    index = (out / "index.html").read_text()
    pages = re.findall(r'href="([^"]+\.html)"', index)
    assert len(pages) == 2 and all((out / page).is_file() for page in pages)
    assert "recreate" in index and "rolling" in index
    for upgrade_id, page in zip(ids, pages, strict=True):
        html = (out / page).read_text()
        assert f"Upgrade <code>{upgrade_id}</code>" in html and "data:image/png;base64," in html

    # looked up afterwards, with no option: the demo's journal is found
    for upgrade_id in ids:
        shown = subprocess.run(
            [*zdu, "report", upgrade_id], env=env, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        assert f"upgrade {upgrade_id} of demo" in shown.stdout
        assert str(journal) in shown.stderr
    # the recreate scenario's report shows its failed requests; the rolling one, none
    recreate = subprocess.run([*zdu, "report", ids[0]], env=env, capture_output=True, text=True, timeout=60)
    assert re.search(r"http: \w+ \(dry run\); requests=\d+, failed_requests=[1-9]", recreate.stdout), (
        recreate.stdout
    )
