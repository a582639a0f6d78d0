"""examples/fleet-sim.toml itself: 1,000 cells, one failing in ring 1, halted, fixed, resumed."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from tests.fleet.conftest import zdu
from zdu.journal import Journal
from zdu.model import UpgradeStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet-sim.toml"
BAD = '\n[[cells]]\nname = "early-bad"\nring = "ring-1"\nversion = "16.5.0"\nplatform = {{ {} }}\n'


@pytest.mark.slow
def test_the_example_fleet_halts_in_ring_1_and_resumes_after_the_fix(tmp_path):
    fleet_file = tmp_path / "fleet-sim.toml"
    fleet_file.write_text(EXAMPLE.read_text() + BAD.format('fail_versions = ["16.6.0"], ready_timeout = 10'))
    report = json.loads(zdu("fleet", "upgrade", str(fleet_file), "--json", check=1).stdout)
    assert report["halted"] is True and report["status"] == "halted"
    assert report["reason"].startswith("ring ring-1: 1 failed cell(s), over its failure budget of 0")
    assert "early-bad" in report["reason"]
    rings = {ring["name"]: ring for ring in report["rings"]}
    assert rings["ring-0"]["succeeded"] == 10 and rings["ring-1"]["failed"] == 1
    assert rings["ring-2"]["untouched"] == 300 and rings["ring-3"]["untouched"] == 600

    journal = Journal(tmp_path / ".zdu" / "fleet-sim" / "journal.sqlite")
    by_target = collections.defaultdict(list)
    for record in journal.upgrades(limit=5000):
        by_target[record.target].append(record.status)
    assert not [t for t in by_target if t.startswith(("main-", "late-"))]  # rings 2 and 3: no upgrade at all
    assert by_target["early-bad"] == [UpgradeStatus.ROLLED_BACK]

    fleet_file.write_text(EXAMPLE.read_text() + BAD.format("fail_versions = []"))
    resumed = json.loads(zdu("fleet", "resume", str(fleet_file), "--json", check=0).stdout)
    assert resumed["status"] == "succeeded" and len(resumed["cells"]) == 1001
    by_target.clear()
    for record in journal.upgrades(limit=5000):
        by_target[record.target].append(record.status)
    assert len(by_target) == 1001
    twice = {t: s for t, s in by_target.items() if s != [UpgradeStatus.SUCCEEDED]}
    assert twice == {"early-bad": [UpgradeStatus.SUCCEEDED, UpgradeStatus.ROLLED_BACK]}  # newest first
