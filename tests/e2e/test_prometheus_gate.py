"""Gates on a real Prometheus scraping a real fleet: the demo app's GitLab-like request metrics.

Prometheus (Debian's package) scrapes every instance's ``/-/metrics`` every second; a thread keeps
its file of targets equal to the fleet's instances as the rollout starts and stops them. The http
probe sends the traffic in dry-run mode (it records, never gates), so the ``prometheus`` probe is
what decides: a release answering 5xx breaks its error-ratio threshold and the upgrade rolls back;
the same upgrade of a healthy release goes through, its ratio measured at 0 (the same query, seeing
data), and a query with no data passes only as its policy says, visibly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import FROM, TO, write_config
from tests.e2e.observability import FleetTargets, running_prometheus
from zdu.upgrade import Upgrade

pytestmark = pytest.mark.slow

ERROR_RATIO = (
    '(sum(rate(http_requests_total{version="$release",status=~"5.."}[5s])) or vector(0)) / '
    'sum(rate(http_requests_total{version="$release"}[5s]))'
)


def with_metric_gates(config: Path, prometheus_url: str) -> None:
    with config.open("a") as out:
        out.write(
            "[[probes]]\n"
            'name = "prometheus"\n'
            f'url = "{prometheus_url}"\n'
            "interval = 1\n"
            "[[probes.queries]]\n"
            'name = "error_ratio"\n'
            f"query = {json.dumps(ERROR_RATIO)}\n"
            "max = 0.005\n"
            'no_data = "pass"\n'  # before the release serves, there is nothing to judge
            "[[probes.queries]]\n"
            'name = "missing"\n'
            "query = 'sum(rate(zdu_no_such_metric_total[5s]))'\n"
            "min = 0\n"
            'no_data = "pass"\n'
            "[[probes]]\n"
            'name = "apdex"\n'
            f'url = "{prometheus_url}"\n'
            "selector = 'version=\"$release\"'\n"
            'window = "5s"\n'
            'no_data = "pass"\n'
        )


def run(tmp_path: Path, fleet, fault: str | None) -> tuple[Upgrade, object]:
    with running_prometheus(tmp_path / "prometheus") as prometheus:
        config = write_config(
            tmp_path,
            strategy="rolling",
            options={"max_surge": 1, "max_unavailable": 0},
            fault=fault,
            probe={"dry_run": True},
        )
        with_metric_gates(config, prometheus.url)
        platform = fleet(config)
        with FleetTargets(prometheus, platform.state_dir / "state.json"):
            assert prometheus.wait_for('count(up{job="fleet"} == 1) == 3'), (
                "Prometheus never scraped the fleet"
            )
            upgrade = Upgrade.from_config(config)
            upgrade.verify_seconds = 8.0  # time for Prometheus to see the release alone
            report = upgrade.run()
            upgrade.close()
    return upgrade, report


def evaluations(upgrade: Upgrade, upgrade_id: str, probe: str) -> list[dict]:
    return [
        evaluation
        for event in upgrade.journal.events(upgrade_id)
        if event.kind.startswith("measurement-") and event.data.get("probe") == probe
        for evaluation in event.data.get("evaluations", [])
    ]


def test_a_release_whose_5xx_ratio_breaks_the_promql_threshold_rolls_back(tmp_path: Path, fleet) -> None:
    upgrade, report = run(tmp_path, fleet, fault="5xx")

    assert report.status.value == "rolled_back", report.summary()
    assert "error_ratio" in report.error and "> 0.005" in report.error
    failed = next(e for e in upgrade.journal.events(report.upgrade_id) if e.kind == "gate-failed")
    (breach,) = [e for e in failed.data["evaluations"] if e["decision"] == "failed"]
    assert breach["check"] == "error_ratio" and breach["value"] > 0.005 and breach["threshold"] == "<= 0.005"
    assert f'version="{TO}"' in breach["query"]
    value, threshold = breach["value"], breach["threshold"]
    print(f"\ngate decision: error_ratio = {value:.3f} (threshold {threshold}): failed")
    # every decision is in the journal with its value: before the release served, "no data", passed
    ratios = evaluations(upgrade, report.upgrade_id, "prometheus")
    assert all("decision" in e and "threshold" in e and "query" in e for e in ratios)
    assert any(
        e["check"] == "error_ratio" and e["value"] is None and e["decision"] == "passed" for e in ratios
    )


def test_a_healthy_release_passes_the_same_gates_measured_at_zero(tmp_path: Path, fleet) -> None:
    upgrade, report = run(tmp_path, fleet, fault=None)

    assert report.status.value == "succeeded", report.summary()
    ratios = [e for e in evaluations(upgrade, report.upgrade_id, "prometheus") if e["check"] == "error_ratio"]
    measured = [e["value"] for e in ratios if e["value"] is not None]
    assert measured and all(value == 0 for value in measured), ratios  # data, and zero
    missing = [e for e in evaluations(upgrade, report.upgrade_id, "prometheus") if e["check"] == "missing"]
    assert missing and all(
        e["value"] is None and e["decision"] == "passed" and e["reason"] == "no data (no_data = 'pass')"
        for e in missing
    )
    apdex = [e for e in evaluations(upgrade, report.upgrade_id, "apdex") if e["check"] == "apdex"]
    scores = [e["value"] for e in apdex if e["value"] is not None]
    assert scores and min(scores) >= 0.995, apdex
    assert FROM != TO
