"""An operator's hands on a running upgrade, and honest outcomes, on a ``sim`` cell in this process.

The running upgrade is steered as from another shell: through the journal only (``zdu.pause``,
``zdu.abort``, ``zdu.promote``), from another thread. The command line's own test, with a real
``zdu upgrade`` process on a real local fleet, is tests/e2e/test_operator_controls.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

import zdu
from zdu.context import ProbeGate, UpgradeAborted, UpgradePaused
from zdu.errors import RollbackRefused, UsageError
from zdu.gates import stop_probes
from zdu.journal import Journal
from zdu.model import Measurement, MeasurementStatus, UpgradeStatus, Verdict, VerdictStatus
from zdu.probe import GateSettings
from zdu.registry import get_plugin_manager
from zdu.testing import MemoryPlatform, make_context
from zdu.upgrade import Upgrade

SECONDS = 30.0


def blue_green(state: Path, **strategy: Any) -> Upgrade:
    raw = {
        "target": {"name": "cell-1", "platform": "sim", "version": "16.5.0"},
        "platform": {"replicas": 2, "start_seconds": 1, "drain_seconds": 1, "time_scale": 0.01},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "blue-green", "preview_seconds": 0, "scale_down_delay": 600, **strategy},
        "upgrade": {"state_dir": str(state)},
    }
    upgrade = Upgrade.from_config(raw, get_plugin_manager())
    upgrade.verify_seconds = 0
    return upgrade


class Running:
    """An upgrade running in a thread, as ``zdu upgrade`` runs in another process."""

    def __init__(self, upgrade: Upgrade, **run: Any) -> None:
        self.upgrade = upgrade
        self.report: zdu.Report | None = None
        self.thread = threading.Thread(target=self._run, kwargs=run, daemon=True)
        self.thread.start()

    def _run(self, **run: Any) -> None:
        self.report = self.upgrade.run(**run)

    def wait_for(self, message: str, upgrade_id: str | None = None) -> str:
        """Wait until a step whose message contains ``message`` starts; return the upgrade's id."""
        journal = self.upgrade.journal
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            ids = [upgrade_id] if upgrade_id else [r.id for r in journal.upgrades("cell-1")]
            for found in ids:
                events = journal.events(found)
                if any(e.kind == "step-started" and message in e.message for e in events[-3:]):
                    return found
            assert self.thread.is_alive(), self.report
            time.sleep(0.05)
        pytest.fail(f"no step {message!r} started")

    def end(self) -> zdu.Report:
        self.thread.join(SECONDS)
        assert not self.thread.is_alive(), "the upgrade did not end"
        assert self.report is not None
        return self.report


def test_promote_ends_a_long_wait_and_the_journal_says_who(tmp_path: Path) -> None:
    running = Running(blue_green(tmp_path))
    upgrade_id = running.wait_for("keep ")
    started = time.monotonic()

    event = zdu.promote(upgrade_id, journal=tmp_path / "journal.sqlite", actor="alice@ops")
    report = running.end()

    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert time.monotonic() - started < 10  # not the 600 s of scale_down_delay
    events = Journal(tmp_path / "journal.sqlite").events(upgrade_id)
    promote = next(e for e in events if e.kind == "promote")
    assert promote.data == {"by": "alice@ops", "full": False} and promote.at == event.at
    assert any(e.kind == "wait-skipped" and "alice@ops" in e.message for e in events)


def test_pause_stops_at_a_safe_point_and_resume_finishes(tmp_path: Path) -> None:
    running = Running(blue_green(tmp_path))
    upgrade_id = running.wait_for("keep ")

    zdu.pause(upgrade_id, journal=tmp_path / "journal.sqlite", actor="bob@ops")
    paused = running.end()

    assert paused.status is UpgradeStatus.PAUSED
    assert "paused by bob@ops" in (paused.error or "")
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.get(upgrade_id).status is UpgradeStatus.PAUSED  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="is paused: no process runs it"):
        zdu.pause(upgrade_id, journal=journal)

    # resumed: the earlier pause is not taken again; a promotion ends the resumed wait
    resumed = Running(blue_green(tmp_path), resume=upgrade_id, actor="carol@ops")
    resumed.wait_for("keep ", upgrade_id)
    zdu.promote(upgrade_id, journal=journal)
    report = resumed.end()

    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    kinds = [(e.kind, e.data.get("by")) for e in journal.events(upgrade_id)]
    assert ("pause-requested", "bob@ops") in kinds and ("resumed", "carol@ops") in kinds


def test_a_lost_lock_pauses_the_upgrade_at_a_safe_point_saying_why(tmp_path: Path) -> None:
    upgrade = blue_green(tmp_path)
    callbacks: list[Any] = []
    upgrade.platform.on_lock_lost = callbacks.append  # type: ignore[attr-defined]  # now ReportsLockLoss
    running = Running(upgrade)
    upgrade_id = running.wait_for("keep ")
    assert len(callbacks) == 1  # registered once the lock was taken

    callbacks[0]("Lease gitlab/zdu-cell-1 is now held by pipeline two")  # from the platform's thread
    paused = running.end()

    assert paused.status is UpgradeStatus.PAUSED
    assert "the target's lock being lost (Lease gitlab/zdu-cell-1 is now held by pipeline two)" in (
        paused.error or ""
    )
    journal = Journal(tmp_path / "journal.sqlite")
    assert [e.kind for e in journal.events(upgrade_id)].count("pause-requested") == 1


def test_a_lock_lost_before_the_upgrade_began_pauses_it_at_the_first_safe_point(tmp_path: Path) -> None:
    upgrade = blue_green(tmp_path)
    upgrade.platform.on_lock_lost = lambda callback: callback("Lease x was deleted")  # type: ignore[attr-defined]
    report = upgrade.run()
    assert report.status is UpgradeStatus.PAUSED
    assert "lock being lost (Lease x was deleted) (at start of preflight)" in (report.error or "")


def test_abort_rolls_back_to_the_old_version(tmp_path: Path) -> None:
    upgrade = blue_green(tmp_path)
    running = Running(upgrade)
    upgrade_id = running.wait_for("keep ")

    zdu.abort(upgrade_id, journal=tmp_path / "journal.sqlite", actor="dave@ops")
    report = running.end()

    assert report.status is UpgradeStatus.ROLLED_BACK
    assert report.error == "aborted by dave@ops"
    assert [str(v) for v in upgrade.platform.serving_versions()] == ["16.5.0"]
    with pytest.raises(UsageError, match="is rolled_back: there is nothing to abort"):
        zdu.abort(upgrade_id, journal=tmp_path / "journal.sqlite")


def test_abort_is_refused_past_the_point_of_no_return(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    upgrade_id = journal.begin(target="t", from_version="16.5.0", to_version="16.6.0", strategy="rolling")
    journal.record(
        upgrade_id, "migrate(post)", "phase-started", "migrate(post) started", {"phase": "migrate(post)"}
    )

    with pytest.raises(RollbackRefused, match="point of no return"):
        zdu.abort(upgrade_id, journal=journal)
    assert [e.kind for e in journal.events(upgrade_id)] == ["phase-started"]


def test_an_abort_that_comes_too_late_is_refused_by_the_running_upgrade() -> None:
    ctx = make_context(MemoryPlatform(), "16.6.0", from_version="16.5.0")
    controls = [zdu.Event("test-upgrade", time.time(), "migrate(post)", "abort-requested", "", {"by": "eve"})]
    ctx = attrs.evolve(ctx, read_events=lambda: controls, reversible_phases=frozenset({"rollout"}))
    ctx.phase = "migrate(post)"
    ctx.check_controls("a step")  # goes on
    ctx.check_controls("another step")
    assert [e[0] for e in ctx.record_event.events] == ["abort-refused"]  # type: ignore[attr-defined]
    ctx.phase = "rollout"
    with pytest.raises(UpgradeAborted, match="aborted by eve"):
        ctx.check_controls("a step")


def test_a_signal_stops_at_a_safe_point_paused(tmp_path: Path) -> None:
    upgrade = blue_green(tmp_path)
    running = Running(upgrade)
    upgrade_id = running.wait_for("keep ")

    upgrade.cancel.set()  # what the first Ctrl-C or SIGTERM does
    report = running.end()

    assert report.status is UpgradeStatus.PAUSED
    assert "Ctrl-C or SIGTERM" in (report.error or "") and f"zdu resume {upgrade_id}" in (report.error or "")
    # nothing was undone: the new set still serves, the old one is kept until the upgrade resumes
    assert [str(v) for v in upgrade.platform.serving_versions()] == ["16.6.0"]
    assert upgrade.journal.get(upgrade_id).status is UpgradeStatus.PAUSED  # type: ignore[union-attr]


# -- honest outcomes -----------------------------------------------------------------------------


def test_an_unexpected_exception_in_a_phase_fails_the_upgrade_and_rolls_back(tmp_path: Path) -> None:
    upgrade = blue_green(tmp_path, scale_down_delay=0)

    def broken(ctx: zdu.UpgradeContext) -> None:
        raise KeyError("a bug")

    upgrade._verify = broken  # type: ignore[method-assign]
    report = upgrade.run()

    assert report.status is UpgradeStatus.ROLLED_BACK
    assert "verify failed: unexpected KeyError" in (report.error or "")
    assert upgrade.journal.get(report.upgrade_id).status is UpgradeStatus.ROLLED_BACK  # type: ignore[union-attr]
    assert [str(v) for v in upgrade.platform.serving_versions()] == ["16.5.0"]


def test_an_upgrade_to_the_version_already_serving_does_nothing_and_records_nothing(tmp_path: Path) -> None:
    first = blue_green(tmp_path, scale_down_delay=0).run()
    assert first.status is UpgradeStatus.SUCCEEDED, first.error

    again = blue_green(tmp_path, scale_down_delay=0).run()

    assert again.nothing_to_do and again.ok and again.upgrade_id == ""
    assert "already serves 16.6.0: nothing to upgrade" in again.summary()
    assert [r.id for r in Journal(tmp_path / "journal.sqlite").upgrades()] == [first.upgrade_id]


@attrs.define
class FakeProbe:
    name: str
    measure_error: Exception | None = None
    stop_error: Exception | None = None

    def start(self, ctx: object) -> None:
        pass

    def measure(self) -> Measurement:
        if self.measure_error is not None:
            raise self.measure_error
        return Measurement(self.name, MeasurementStatus.SUCCESSFUL)

    def stop(self) -> Verdict:
        if self.stop_error is not None:
            raise self.stop_error
        return Verdict(self.name, VerdictStatus.PASSED)


def test_a_probe_that_cannot_measure_fails_its_gate_as_inconclusive() -> None:
    gate = ProbeGate(FakeProbe("dead", measure_error=RuntimeError("thread gone")), GateSettings(), last=0.0)
    ctx = attrs.evolve(make_context(MemoryPlatform(), "16.6.0", from_version="16.5.0"), gates=[gate])

    with pytest.raises(UpgradePaused, match="probe dead was inconclusive"):
        ctx.gate("a step")
    assert gate.measurements[0].status is MeasurementStatus.INCONCLUSIVE
    assert gate.measurements[0].reasons == ("the probe could not measure: RuntimeError: thread gone",)


def test_a_probe_that_fails_to_stop_hides_no_other_verdict() -> None:
    gates = [
        ProbeGate(FakeProbe("broken", stop_error=OSError("socket closed")), GateSettings()),
        ProbeGate(FakeProbe("fine"), GateSettings()),
    ]

    verdicts = stop_probes(gates)

    assert [(v.probe, v.status) for v in verdicts] == [
        ("broken", VerdictStatus.INCONCLUSIVE),
        ("fine", VerdictStatus.PASSED),
    ]
    assert verdicts[0].reasons == ("the probe failed to stop: OSError: socket closed",)


# -- manual pause steps and a full promotion --------------------------------------------------------


def rolling(state: Path, **strategy: Any) -> Upgrade:
    raw = {
        "target": {"name": "cell-1", "platform": "sim", "version": "16.5.0"},
        "platform": {"replicas": 2, "start_seconds": 1, "drain_seconds": 1, "time_scale": 0.01},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling", **strategy},
        "upgrade": {"state_dir": str(state)},
    }
    upgrade = Upgrade.from_config(raw, get_plugin_manager())
    upgrade.verify_seconds = 0
    return upgrade


def test_a_manual_pause_step_of_rolling_waits_for_promote(tmp_path: Path) -> None:
    upgrade = rolling(tmp_path, pause_after=[1])
    assert ("pause", "after batch 1: until 'zdu promote ID'") in [
        (s.action, s.detail) for s in upgrade.plan().steps
    ]
    running = Running(upgrade)
    deadline = time.monotonic() + SECONDS
    while not any(
        e.kind == "paused-for-promotion"
        for r in upgrade.journal.upgrades("cell-1")
        for e in upgrade.journal.events(r.id)
    ):
        assert time.monotonic() < deadline and running.thread.is_alive()
        time.sleep(0.05)
    upgrade_id = upgrade.journal.upgrades("cell-1")[0].id
    time.sleep(0.3)
    assert running.thread.is_alive()  # still waiting, with one batch done
    assert sorted(str(v) for v in upgrade.platform.serving_versions()) == ["16.5.0", "16.6.0"]

    zdu.promote(upgrade_id, journal=upgrade.journal)
    report = running.end()

    assert report.status is UpgradeStatus.SUCCEEDED, report.error


def test_pause_after_names_the_field_when_bad(tmp_path: Path) -> None:
    with pytest.raises(zdu.ConfigError, match="pause_after"):
        rolling(tmp_path, pause_after=[0])


def test_a_full_promotion_skips_the_canary_steps_and_its_analysis() -> None:
    from zdu.testing import rollout  # noqa: PLC0415
    from zdu_strategies.canary import Canary, CanaryConfig, CanaryStep  # noqa: PLC0415

    promote = zdu.Event("test-upgrade", time.time(), "rollout", "promote", "", {"by": "frank", "full": True})
    ctx = make_context(MemoryPlatform(), "16.6.0")
    ctx = attrs.evolve(ctx, read_events=lambda: [promote])
    canary = Canary(CanaryConfig(steps=(CanaryStep(weight=10, pause={}), CanaryStep(weight=50, pause="1h"))))

    rollout(canary, ctx)  # would wait for ever without the promotion

    kinds = [kind for kind, _, _ in ctx.record_event.events]  # type: ignore[attr-defined]
    assert "analysis-skipped" in kinds and "steps-skipped" in kinds
    assert not any("% of requests to" in message for _, message, _ in ctx.record_event.events)  # type: ignore[attr-defined]
    assert [str(v) for v in ctx.platform.serving_versions()] == ["16.6.0"]
