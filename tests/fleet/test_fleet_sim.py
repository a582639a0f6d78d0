"""Fleets of simulated cells through the command line: rings, budgets, halts, resume, approval, bake."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time

from tests.fleet.conftest import RELEASE, upgrades_of, write_fleet, zdu
from zdu.model import UpgradeStatus

RINGS = [
    {"name": "ring-0", "concurrency": 2},
    {"name": "ring-1", "concurrency": 4},
    {"name": "ring-2", "concurrency": 6},
    {"name": "ring-3", "concurrency": 8},
]


def cells(counts=(2, 6, 10, 14), *, bad: str | None = None, bad_platform: dict | None = None):
    out = []
    for ring, count in enumerate(counts):
        out.append({"name": f"r{ring}-{{index:02d}}", "ring": f"ring-{ring}", "count": count})
    if bad is not None:
        ring = int(bad[1])
        out.append(
            {"name": bad, "ring": f"ring-{ring}", "platform": bad_platform or {"fail_versions": [RELEASE]}}
        )
    return out


def names(counts=(2, 6, 10, 14)):
    return [f"r{ring}-{index:02d}" for ring, count in enumerate(counts) for index in range(count)]


def overlap(records) -> int:
    """The most upgrades in progress at one moment."""
    moments = sorted([(r.started_at, 1) for r in records] + [(r.finished_at, -1) for r in records])
    most = current = 0
    for _, change in moments:
        current += change
        most = max(most, current)
    return most


def test_every_cell_upgraded_once_ring_by_ring_within_concurrency(tmp_path):
    fleet_file = write_fleet(tmp_path, RINGS, cells())
    result = zdu("fleet", "upgrade", str(fleet_file), "--json", check=0)
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded" and not report["halted"]
    assert {c["state"] for c in report["cells"]} == {"succeeded"}
    state = tmp_path / "state"
    by_ring: dict[str, list] = {}
    for name in names():
        (record,) = upgrades_of(state, name)
        assert record.status is UpgradeStatus.SUCCEEDED and record.to_version == RELEASE
        by_ring.setdefault(name.split("-")[0], []).append(record)
    for ring, records in by_ring.items():
        limit = RINGS[int(ring[1])]["concurrency"]
        assert 1 < overlap(records) <= limit, (ring, overlap(records))
    # ring by ring: every upgrade of a ring ended before the next ring's first began
    order = [by_ring[f"r{n}"] for n in range(4)]
    for earlier, later in itertools.pairwise(order):
        assert max(r.finished_at for r in earlier) <= min(r.started_at for r in later)


def test_a_failing_cell_halts_its_ring_later_rings_untouched_then_resume(tmp_path):
    fleet_file = write_fleet(tmp_path, RINGS, cells(bad="r1-bad"))
    result = zdu("fleet", "upgrade", str(fleet_file), "--json", check=1)
    report = json.loads(result.stdout)
    assert report["status"] == "halted" and report["halted"] is True
    assert "ring-1" in report["reason"] and "r1-bad" in report["reason"] and "budget of 0" in report["reason"]
    state = tmp_path / "state"
    (bad,) = upgrades_of(state, "r1-bad")
    assert bad.status is UpgradeStatus.ROLLED_BACK
    rings = {r["name"]: r for r in report["rings"]}
    assert rings["ring-1"]["state"] == "failed" and rings["ring-1"]["failed"] == 1
    # rings 2 and 3: no upgrade at all
    for name in names():
        if name.startswith(("r2-", "r3-")):
            assert upgrades_of(state, name) == [], name
            assert not (state / "targets" / name).exists()
    assert rings["ring-2"]["untouched"] == 10 and rings["ring-3"]["untouched"] == 14

    # a second 'upgrade' is refused while the run is halted
    busy = zdu("fleet", "upgrade", str(fleet_file), "--json", check=3)
    assert "halted" in busy.stderr and "zdu fleet resume" in busy.stderr

    # the fix: the cell's release no longer fails
    fixed = write_fleet(tmp_path, RINGS, cells(bad="r1-bad", bad_platform={"fail_versions": []}))
    resumed = json.loads(zdu("fleet", "resume", str(fixed), "--json", check=0).stdout)
    assert resumed["status"] == "succeeded" and resumed["run_id"] == report["run_id"]
    for name in names():
        (record,) = upgrades_of(state, name)  # once each: none twice, none skipped
        assert record.status is UpgradeStatus.SUCCEEDED, name
    # the instrument sees a second upgrade where there was one: the failed cell's retry
    assert [r.status for r in upgrades_of(state, "r1-bad")] == [
        UpgradeStatus.ROLLED_BACK,
        UpgradeStatus.SUCCEEDED,
    ]


def test_a_failure_within_the_budget_does_not_halt(tmp_path):
    rings = [dict(RINGS[0]), {**RINGS[1], "failure_budget": 1}]
    fleet_file = write_fleet(tmp_path, rings, cells((2, 6), bad="r1-bad"))
    report = json.loads(zdu("fleet", "upgrade", str(fleet_file), "--json", check=0).stdout)
    assert report["status"] == "succeeded"
    (bad,) = [c for c in report["cells"] if c["cell"] == "r1-bad"]
    assert bad["state"] == "failed" and bad["version"] == "16.5.0"


def test_on_failure_finish_completes_the_ring_stop_does_not(tmp_path):
    counts = (1, 12)
    for on_failure in ("stop", "finish"):
        directory = tmp_path / on_failure
        directory.mkdir()
        rings = [RINGS[0], {"name": "ring-1", "concurrency": 2, "on_failure": on_failure}]
        fleet_file = write_fleet(
            directory,
            rings,
            [
                cells(counts)[0],
                {
                    "name": "r1-bad",
                    "ring": "ring-1",
                    "platform": {"fail_versions": [RELEASE], "ready_timeout": 1},
                },
                cells(counts)[1],
            ],
        )
        report = json.loads(zdu("fleet", "upgrade", str(fleet_file), "--json", check=1).stdout)
        ring = {r["name"]: r for r in report["rings"]}["ring-1"]
        if on_failure == "finish":
            assert ring["succeeded"] == 12 and ring["untouched"] == 0
        else:
            assert ring["untouched"] >= 8, ring


def test_sigkill_then_resume_upgrades_no_cell_twice_and_skips_none(tmp_path):
    counts = (2, 4, 18, 6)
    fleet_file = write_fleet(tmp_path, RINGS, cells(counts), platform={"time_scale": 0.05})
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from zdu.cli import main; main()",
            "fleet",
            "upgrade",
            str(fleet_file),
            "--json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "state"
    deadline = time.monotonic() + 120
    in_flight = []
    try:
        while time.monotonic() < deadline:  # kill it in ring 2 with upgrades in flight
            time.sleep(0.1)
            records = [r for n in names(counts) if n.startswith("r2-") for r in upgrades_of(state, n)]
            in_flight = [r for r in records if r.status is UpgradeStatus.RUNNING]
            done = [r for r in records if r.status is UpgradeStatus.SUCCEEDED]
            if in_flight and done:
                break
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert in_flight, "no cell was mid-upgrade when the process was killed"
    status = json.loads(zdu("fleet", "status", str(fleet_file), "--json", check=0).stdout)
    assert status["status"] == "interrupted"

    resumed = json.loads(zdu("fleet", "resume", str(fleet_file), "--json", check=0).stdout)
    assert resumed["status"] == "succeeded"
    for name in names(counts):
        records = upgrades_of(state, name)
        assert [r.status for r in records] == [UpgradeStatus.SUCCEEDED], (name, records)
    # the cells killed mid-upgrade were resumed: the same upgrade ids, now succeeded
    for record in in_flight:
        (after,) = upgrades_of(state, record.target)
        assert after.id == record.id


def test_halt_request_stops_new_cells_and_resume_continues(tmp_path):
    counts = (1, 30)
    rings = [RINGS[0], {"name": "ring-1", "concurrency": 2}]
    fleet_file = write_fleet(tmp_path, rings, cells(counts), platform={"time_scale": 0.05})
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from zdu.cli import main; main()",
            "fleet",
            "upgrade",
            str(fleet_file),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    state = tmp_path / "state"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not upgrades_of(state, "r1-00"):
        time.sleep(0.1)
    zdu("fleet", "halt", str(fleet_file), "--reason", "paging storm", check=0)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    report = json.loads(out)
    assert report["status"] == "halted" and "paging storm" in report["reason"]
    ring = {r["name"]: r for r in report["rings"]}["ring-1"]
    assert ring["untouched"] > 0
    resumed = json.loads(zdu("fleet", "resume", str(fleet_file), "--json", check=0).stdout)
    assert resumed["status"] == "succeeded"
    for name in names(counts):
        assert len(upgrades_of(state, name)) == 1


def test_a_ring_with_approval_waits_for_it(tmp_path):
    rings = [RINGS[0], {"name": "ring-1", "concurrency": 2, "approval": True}]
    fleet_file = write_fleet(tmp_path, rings, cells((1, 2)))
    waiting = json.loads(zdu("fleet", "upgrade", str(fleet_file), "--json", check=4).stdout)
    assert waiting["status"] == "waiting" and "--approve ring-1" in waiting["reason"]
    assert upgrades_of(tmp_path / "state", "r1-00") == []
    assert len(upgrades_of(tmp_path / "state", "r0-00")) == 1
    done = json.loads(
        zdu("fleet", "resume", str(fleet_file), "--json", "--approve", "ring-1", check=0).stdout
    )
    assert done["status"] == "succeeded"


def test_cells_start_only_inside_their_window(tmp_path):
    fleet_file = write_fleet(
        tmp_path,
        [{"name": "ring-0", "concurrency": 2}],
        [
            {"name": "now", "ring": "ring-0", "window": "wed 11:00-13:00"},
            {"name": "weekend", "ring": "ring-0", "window": "sat 22:00-23:00"},
        ],
    )
    # a Wednesday noon: 'now' may start, 'weekend' may not
    waiting = json.loads(
        zdu("fleet", "upgrade", str(fleet_file), "--json", "--now", "2026-12-02T12:00:00Z", check=4).stdout
    )
    assert "2026-12-05T22:00:00+00:00" in waiting["reason"]
    assert len(upgrades_of(tmp_path / "state", "now")) == 1
    assert upgrades_of(tmp_path / "state", "weekend") == []
    done = json.loads(
        zdu("fleet", "resume", str(fleet_file), "--json", "--now", "2026-12-05T22:30:00Z", check=0).stdout
    )
    assert done["status"] == "succeeded"
    assert len(upgrades_of(tmp_path / "state", "now")) == 1


def test_a_cell_that_dies_during_the_bake_halts_before_the_next_ring(tmp_path):
    rings = [{"name": "ring-0", "concurrency": 2, "bake_seconds": 3.0}, {"name": "ring-1", "concurrency": 2}]
    crash = {"fail_versions": [RELEASE], "failure": "crash", "crash_after": 50}  # 1 s real, after verify
    fleet_file = write_fleet(
        tmp_path, rings, [*cells((1, 2)), {"name": "r0-crash", "ring": "ring-0", "platform": crash}]
    )
    report = json.loads(zdu("fleet", "upgrade", str(fleet_file), "--json", check=1).stdout)
    assert (
        report["status"] == "halted"
        and "bake of ring ring-0" in report["reason"]
        and "r0-crash" in report["reason"]
    )
    (record,) = upgrades_of(tmp_path / "state", "r0-crash")
    assert record.status is UpgradeStatus.SUCCEEDED  # its own upgrade passed; the bake caught it
    assert upgrades_of(tmp_path / "state", "r1-00") == []
