"""`zdu demo --json` on the embedded default: the figures the README promises, and their controls.

Every zero of a safe scenario stands beside negative controls measured in the same run by the same
instruments (zdu's open-loop probe and wrk, which shares no code with zdu), with the router retrying
nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.e2e.observability import ARTIFACTS

# the whole demo runs once for the module: minutes, not the suite's 300 s per test
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SAFE = [
    "rolling",
    "blue-green",
    "rolling + sticky-nginx",
    "rolling + assets-shim",
    "blue-green + sticky-nginx",
    "rolling + sticky-nginx + ordered",
    "get + drain",
]
CONTROLS = ["recreate", "rolling + no drain", "get + no drain"]
WITH_A_LAYER = [key for key in SAFE if "sticky-nginx" in key or "assets-shim" in key]


def _key(row: dict) -> str:
    return " + ".join(
        (
            row["strategy"],
            *row["layers"],
            *([row["migrations"]] if row["migrations"] != "none" else []),
            *([row["variant"]] if row["variant"] else []),
        )
    )


@pytest.fixture(scope="module")
def demo() -> dict[str, dict]:
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "zdu"), "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    # the table a person reads (stderr), kept with the test's artifacts
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    table = done.stderr[done.stderr.rindex("zdu demo: what users saw") :]
    (ARTIFACTS / "demo-table.txt").write_text(table)
    # nothing the demo started is left: instances log into its state directory, nginx runs under it
    assert [p for p in psutil.process_iter() if p.pid not in before and _belongs_to_a_demo(p)] == []
    return {_key(row): row for row in json.loads(done.stdout)["scenarios"]}  # stdout is only JSON


def test_every_scenario_ran_with_its_role(demo):
    assert list(demo) == [
        "recreate",
        "rolling + no drain",
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
    assert {key for key, row in demo.items() if row["role"] == "safe"} == set(SAFE)
    assert {key for key, row in demo.items() if row["role"] == "control"} == set(CONTROLS)
    for row in demo.values():
        assert row["router_retries"] is False, row
        assert row["independent"] is not None and row["independent"]["tool"] == "wrk", row


@pytest.mark.parametrize("key", SAFE)
def test_a_safe_upgrade_loses_nothing_under_gitlab_shaped_traffic(demo, key):
    row = demo[key]
    assert row["status"] == "succeeded", row
    # the traffic a skeptic asks for: open loop at >= 200 requests/s, >= 10% writes, long downloads
    # and websockets held across the rollout
    assert row["offered_rps"] >= 200, row
    assert row["writes"] >= 0.1 * row["offered_rps"] * row["duration_s"] * 0.8, row
    assert row["streams"] >= 5 * row["duration_s"] / 3 * 0.8, row
    assert row["sockets"] >= 5, row
    figures = {name: row[name] for name in ("failed", "lost_writes", "cut_streams", "dropped_sockets")}
    assert figures == dict.fromkeys(figures, 0), row
    assert row["independent"]["failed"] == 0, row
    assert row["independent"]["requests"] > 0, row
    # a zero states its reach: about 3/N at 95%
    assert 0 < row["failure_rate_upper_95"] <= 3.5 / row["requests"], row
    if key in WITH_A_LAYER:
        assert row["asset_errors"] == 0, row


@pytest.mark.parametrize("key", CONTROLS)
def test_the_same_instruments_see_failures_in_the_negative_controls(demo, key):
    row = demo[key]
    assert row["failed"] + row["lost_writes"] + row["cut_streams"] > 0, row
    assert row["independent"]["failed"] > 0, row


def test_the_hazards_the_layers_and_the_order_cure_are_reproduced(demo):
    # mixed versions without a layer: pages ask for assets of the other version
    assert demo["rolling"]["asset_errors"] > 0
    # post-deployment migrations run early break the old version
    assert demo["rolling + sticky-nginx + post-first"]["failed"] > 0
    assert demo["rolling + sticky-nginx + post-first"]["role"] == "unsafe"


def _belongs_to_a_demo(process: psutil.Process) -> bool:
    try:
        paths = [f.path for f in process.open_files()] + process.cmdline()
    except psutil.Error:
        return False
    return any("/zdu-demo-" in path for path in paths)
