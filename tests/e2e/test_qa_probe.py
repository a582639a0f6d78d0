"""The ``qa`` probe on a real local fleet: a smoke test that fails stops the rollout and rolls back.

The smoke test is a real client of the target: it asks the router for ``/api/v4/version`` a number of
times, prints what it saw (and a token it was given, which must reach the journal redacted) and exits
1 when a version it rejects answered. Rejecting the release stands for a QA suite failing on it; the
negative control rejects a version that never runs, and the upgrade goes through with both QA runs
(after the first new instance serves, before finalize) passed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import FROM, TO, write_config
from tests.e2e.observability import TOLERANT
from zdu.model import MeasurementStatus, Release, Target, VerdictStatus
from zdu.probe import ProbeContext
from zdu.upgrade import Upgrade
from zdu_probes.qa import QaProbe, QaProbeConfig

pytestmark = pytest.mark.slow

SMOKE = """
import json, os, sys, urllib.request
url, rejected = sys.argv[1], sys.argv[2]
print("token", os.environ["QA_TOKEN"])
seen = []
# until the release answered (it may hold one instance of four) or 200 requests: a new instance is
# routed by the new nginx workers, and for nginx's first 100 ms after a reload the previous ones
# still take a share of the connections with the routing before it
while len(seen) < 200 and not (len(seen) >= 12 and any(v != seen[0] for v in seen)):
    with urllib.request.urlopen(url + "/api/v4/version", timeout=5) as answer:
        seen.append(json.load(answer)["version"])
print("versions seen:", " ".join(seen))
sys.exit(1 if rejected in seen else 0)
"""

TOKEN = "qa-token-8c1f3e"


def with_qa(config: Path, rejected: str) -> None:
    script = config.parent / "smoke.py"
    script.write_text(SMOKE)
    with config.open("a") as out:
        out.write(
            "[[probes]]\n"
            'name = "qa"\n'
            f"command = {json.dumps([sys.executable, str(script), '{url}', rejected])}\n"
            'at = ["first-new", "before-finalize"]\n'
            "timeout = 60\n"
            f'env = {{ QA_TOKEN = "{TOKEN}" }}\n'
        )


def qa_events(upgrade: Upgrade, upgrade_id: str) -> list[dict]:
    return [
        dict(e.data)
        for e in upgrade.journal.events(upgrade_id)
        if e.kind.startswith("measurement-") and e.data.get("probe") == "qa"
    ]


def test_a_failing_smoke_test_stops_the_rollout_and_rolls_back(tmp_path: Path, fleet) -> None:
    config = write_config(
        tmp_path, strategy="rolling", options={"max_surge": 1, "max_unavailable": 0}, probe=TOLERANT
    )
    with_qa(config, rejected=TO)
    platform = fleet(config)
    upgrade = Upgrade.from_config(config)

    report = upgrade.run()

    assert report.status.value == "rolled_back", report.summary()
    assert "qa" in (report.error or "") and "exited with 1 at first-new" in (report.error or "")
    runs = qa_events(upgrade, report.upgrade_id)
    assert len(runs) == 1, runs  # it stopped at the first gate: no run before finalize
    (evaluation,) = runs[0]["evaluations"]
    assert evaluation["value"] == 1 and evaluation["decision"] == "failed"
    assert TO in evaluation["output"] and f"token {TOKEN}" not in evaluation["output"]
    assert "token ***" in evaluation["output"]
    assert TOKEN not in json.dumps([dict(e.data) for e in upgrade.journal.events(report.upgrade_id)])
    verdict = next(v for v in report.verdicts if v.probe == "qa")
    assert verdict.status is VerdictStatus.FAILED
    # rolled back: only the old version serves, at full size
    groups = {g.version: g for g in platform.groups() if g.replicas > 0}
    assert set(map(str, groups)) == {FROM} and groups[next(iter(groups))].ready == 3
    upgrade.close()


def test_a_passing_smoke_test_runs_at_both_gates_and_the_upgrade_goes_through(tmp_path: Path, fleet) -> None:
    config = write_config(
        tmp_path, strategy="rolling", options={"max_surge": 1, "max_unavailable": 0}, probe=TOLERANT
    )
    with_qa(config, rejected="99.0.0")
    fleet(config)
    upgrade = Upgrade.from_config(config)

    report = upgrade.run()

    assert report.ok, report.summary()
    runs = qa_events(upgrade, report.upgrade_id)
    assert [r["evaluations"][0]["check"] for r in runs] == ["qa at first-new", "qa at before-finalize"]
    assert all(r["evaluations"][0]["value"] == 0 for r in runs)
    # the first run saw the release serving beside the old version; the last saw only the release
    assert TO in runs[0]["evaluations"][0]["output"]
    assert FROM not in runs[1]["evaluations"][0]["output"].split("versions seen:")[1]
    upgrade.close()


def test_a_smoke_test_past_its_timeout_is_killed_and_fails(tmp_path: Path) -> None:
    probe = QaProbe(QaProbeConfig(command=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5))
    probe.start(
        ProbeContext(
            "http://127.0.0.1:9", Target("t", "local", FROM), Release(TO), Target("t", "local", FROM).version
        )
    )
    assert probe.at_gate("rollout", "batch 1") is True
    began = time.monotonic()
    measurement = probe.measure()
    assert time.monotonic() - began < 10
    assert measurement.status is MeasurementStatus.FAILED
    assert "past its timeout of 0.5 s" in measurement.reasons[0]
    # a gate that is not a chosen one runs nothing
    assert probe.at_gate("rollout", "batch 2") is False
    assert probe.measure().status is MeasurementStatus.SUCCESSFUL
    assert probe.stop().status is VerdictStatus.FAILED
