"""`zdu demo --json` on the embedded default: the numbers the README promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def test_demo_shows_recreate_losing_requests_and_rolling_and_blue_green_losing_none():
    """And the traffic layers bringing the asset errors of mixed versions to zero."""
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "zdu"), "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    scenarios = json.loads(done.stdout)["scenarios"]  # stdout is only JSON
    rows = {
        " + ".join(
            (
                row["strategy"],
                *row["layers"],
                *([row["migrations"]] if row["migrations"] != "none" else []),
                *([row["variant"]] if row["variant"] else []),
            )
        ): row
        for row in scenarios
    }
    assert list(rows) == [
        "recreate",
        "rolling",
        "blue-green",
        "rolling + sticky-nginx",
        "rolling + assets-shim",
        "blue-green + sticky-nginx",
        "rolling + sticky-nginx + ordered",
        "rolling + sticky-nginx + post-first",
        "get + no drain",
        "get + drain",
    ]
    for row in rows.values():
        assert set(row) >= {
            "strategy",
            "layers",
            "requests",
            "failed",
            "asset_errors",
            "longest_outage_s",
            "p99_ms",
            "duration_s",
        }
        assert row["requests"] / row["duration_s"] >= 100, row  # at least 100 probe requests per second
    assert rows["recreate"]["failed"] > 0 and rows["recreate"]["longest_outage_s"] > 0
    assert rows["rolling"]["failed"] == 0
    assert rows["blue-green"]["failed"] == 0
    # mixed versions: the asset hazard is reproduced and reported (the traffic layers cure it)
    assert rows["rolling"]["asset_errors"] > 0
    for key in ("rolling + sticky-nginx", "rolling + assets-shim", "blue-green + sticky-nginx"):
        assert rows[key]["status"] == "succeeded", rows[key]
        assert (rows[key]["failed"], rows[key]["asset_errors"]) == (0, 0), rows[key]
    # migrations in zdu's order lose nothing; post-deployment ones run early break the old version
    assert (
        rows["rolling + sticky-nginx + ordered"]["failed"],
        rows["rolling + sticky-nginx + ordered"]["asset_errors"],
    ) == (0, 0)
    assert rows["rolling + sticky-nginx + post-first"]["failed"] > 0
    # the same fleet behind HAProxy: GET alone (stop the node, rely on health checks) loses requests,
    # zdu's drain of each node loses none
    assert rows["get + no drain"]["failed"] > 0
    assert rows["get + drain"]["status"] == "succeeded"
    assert rows["get + drain"]["failed"] == 0
    # nothing the demo started is left: instances log into its state directory, nginx runs under it
    assert [p for p in psutil.process_iter() if p.pid not in before and _belongs_to_a_demo(p)] == []


def _belongs_to_a_demo(process: psutil.Process) -> bool:
    try:
        paths = [f.path for f in process.open_files()] + process.cmdline()
    except psutil.Error:
        return False
    return any("/zdu-demo-" in path for path in paths)
