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
    "canary",
    "rolling + sticky-nginx",
    "rolling + assets-shim",
    "blue-green + sticky-nginx",
    "rolling + sticky-nginx + ordered",
    "get + drain",
]
CONTROLS = ["recreate", "rolling + no drain", "get + no drain"]
BAD_RELEASES = ["rolling + bad release", "blue-green + bad release", "canary + bad release"]
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
        "canary",
        "rolling + sticky-nginx",
        "rolling + assets-shim",
        "blue-green + sticky-nginx",
        *BAD_RELEASES,
        "rolling + sticky-nginx + ordered",
        "rolling + sticky-nginx + post-first",
        "get + no drain",
        "get + drain",
    ]
    assert {key for key, row in demo.items() if row["role"] == "safe"} == set(SAFE)
    assert {key for key, row in demo.items() if row["role"] == "control"} == set(CONTROLS)
    assert {key for key, row in demo.items() if row["role"] == "blast-radius"} == set(BAD_RELEASES)
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
    # each of the 5 download slots completes a 3 s download after another (10% slack each), from
    # the probe's start (after preflight) to its stop (the last downloads are awaited, not counted
    # twice): the upgrade's duration less one download
    assert row["streams"] >= 5 * int((row["duration_s"] - 3) / (3 * 1.1)), row
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


def test_a_bad_release_hurts_the_fewest_users_where_it_is_analysed_before_them(demo):
    rows = {key.partition(" + ")[0]: demo[key] for key in BAD_RELEASES}
    for strategy, row in rows.items():
        assert row["variant"] == "bad release", row
        assert row["status"] == "rolled_back", row  # the gating probe caught it
        # users are back on the old version within 2 s of the decision
        assert row["restore_s"] is not None and 0 <= row["restore_s"] <= 2.0, (strategy, row)
        assert isinstance(row["user_failed"], int), row
        if row["user_failed"]:
            assert row["detect_s"] is not None and row["detect_s"] >= 0, row
    # the negative control, same instrument and run: rolling hands the release to users at once
    assert rows["rolling"]["user_failed"] > 0, rows["rolling"]
    # blue-green's preview analysis caught it before any user
    assert rows["blue-green"]["user_failed"] == 0, rows["blue-green"]
    # the canary: analysed before users too, then a small share of them
    assert rows["canary"]["user_failed"] <= rows["rolling"]["user_failed"] / 5, rows
    # the safe rows report no blast radius
    assert demo["canary"]["user_failed"] is None and demo["canary"]["failed"] == 0


def _belongs_to_a_demo(process: psutil.Process) -> bool:
    try:
        paths = [f.path for f in process.open_files()] + process.cmdline()
    except psutil.Error:
        return False
    return any("/zdu-demo-" in path for path in paths)
