"""Pure parts of metrics, notifications, journals discovery and the CLI's warning summary."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from zdu.cli import WarningSummary
from zdu.context import UpgradeInfo
from zdu.journal import Journal
from zdu.journals import candidate_journals, journal_of_config
from zdu.metrics import parse_address, request_counts
from zdu.model import Report, UpgradeStatus, Verdict, VerdictStatus
from zdu.notify import notification_of


def test_request_counts_by_kind_when_the_probe_splits_them_else_in_all() -> None:
    split = request_counts(
        {
            "requests": 10,
            "failed_requests": 2,
            "asset_errors": 1,
            "page_requests": 6,
            "page_failed": 2,
            "asset_requests": 4,
            "asset_failed": 0,
            "failure_rate_upper_95": 0.3,
        }
    )
    assert sorted(split) == sorted(
        [
            ("asset", "ok", 3.0),
            ("asset", "failed", 0.0),
            ("page", "ok", 4.0),
            ("page", "failed", 2.0),
            ("asset", "asset_error", 1.0),
        ]
    )
    assert request_counts({"requests": 5, "failed_requests": 1}) == [
        ("all", "ok", 4.0),
        ("all", "failed", 1.0),
        ("all", "asset_error", 0.0),
    ]
    assert request_counts({"error_ratio": 0.1}) == []


def test_parse_address_names_a_bad_one() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address(":9464") == ("0.0.0.0", 9464)
    with pytest.raises(ValueError, match="'nine'"):
        parse_address("nine")


def test_a_notification_tells_outcome_trigger_reason_and_figures() -> None:
    info = UpgradeInfo("id-1", "cell", "16.5.0", "16.6.0", "rolling")
    report = Report(
        upgrade_id="id-1",
        target="cell",
        from_version="16.5.0",
        to_version="16.6.0",
        strategy="rolling",
        layers=(),
        status=UpgradeStatus.ROLLED_BACK,
        started_at=0.0,
        finished_at=12.5,
        verdicts=(Verdict("http", VerdictStatus.FAILED, {"requests": 100, "failed_requests": 3}),),
        error="rollout failed: interrupted",
    )
    note = notification_of(info, report)
    assert note.trigger == "interrupted" and note.duration_s == 12.5
    assert note.figures == {"http.requests": 100.0, "http.failed_requests": 3.0}
    payload = note.slack_payload()
    assert payload["text"] == "zdu: cell 16.5.0 -> 16.6.0: rolled back (interrupted)"
    assert payload["attachments"][0]["color"] == "warning"
    assert payload["attachments"][0]["text"] == "rollout failed: interrupted"


def test_journals_are_found_beside_configurations_and_in_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDU_STATE_DIR", str(tmp_path / "default"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "cell.toml").write_text('[target]\nname = "c"\n[upgrade]\nstate_dir = "st"\n')
    (work / "other.toml").write_text("[tool]\nx = 1\n")  # not a zdu configuration
    assert journal_of_config(work / "cell.toml") == (work / "st" / "journal.sqlite").resolve()
    assert journal_of_config(work / "other.toml") is None
    assert candidate_journals(work) == []  # none exists yet
    Journal(work / "st" / "journal.sqlite")
    assert candidate_journals(work) == [(work / "st" / "journal.sqlite").resolve()]
    elsewhere = Journal(tmp_path / "elsewhere" / "journal.sqlite")
    assert elsewhere.path.resolve() not in candidate_journals(work)
    elsewhere.begin(target="t", from_version="16.5.0", to_version="16.6.0", strategy="rolling")
    assert elsewhere.path.resolve() in candidate_journals(work)  # remembered by begin()


def test_warning_summary_counts_by_message_and_drops_the_upgrades_own() -> None:
    summary = WarningSummary()
    probe = logging.getLogger("zdu.probes.http")
    upgrade = logging.getLogger("zdu.upgrade")
    probe.addHandler(summary)
    upgrade.addHandler(summary)
    try:
        for second in (1, 2, 3):
            probe.warning("probe %s: requests fail since %d s", "http", second)
        upgrade.warning("gate failed")
    finally:
        probe.removeHandler(summary)
        upgrade.removeHandler(summary)
    assert summary.lines() == ["3 x zdu.probes.http: probe http: requests fail since 1 s"]
