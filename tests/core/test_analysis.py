"""UpgradeContext.analyse: a preview analysis lets a switch of traffic happen only when every probe passed."""

from __future__ import annotations

from typing import Any

import pytest

from zdu.context import UpgradeContext, UpgradeInfo
from zdu.errors import GateFailed
from zdu.model import Measurement, MeasurementStatus, Release, Target, Verdict, VerdictStatus, Version
from zdu.probe import GateSettings, ProbeContext


class StandInProbe:
    """A probe whose verdict is fixed in advance: the analysis is judged, not the traffic."""

    def __init__(self, status: VerdictStatus) -> None:
        self.status = status
        self.started: list[str] = []

    @property
    def name(self) -> str:
        return "stand-in"

    def start(self, ctx: ProbeContext) -> None:
        self.started.append(ctx.url)

    def measure(self) -> Measurement:
        return Measurement(probe="stand-in", status=MeasurementStatus.SUCCESSFUL)

    def stop(self) -> Verdict:
        return Verdict(probe="stand-in", status=self.status, reasons=(f"made {self.status.value}",))


def context(probe: StandInProbe, *, dry_run: bool = False) -> tuple[UpgradeContext, list[Any]]:
    events: list[Any] = []
    version = Version.parse("16.5.0")
    ctx = UpgradeContext(
        info=UpgradeInfo("id", "cell", "16.5.0", "16.6.0", "blue-green"),
        target=Target(name="cell", platform="local", version=version),
        release=Release(version=Version.parse("16.6.0")),
        from_version=version,
        platform=None,  # type: ignore[arg-type]
        record_event=lambda kind, message, data: events.append((kind, message, data)),
        probe_factories=[(lambda: probe, GateSettings(dry_run=dry_run))],
    )
    return ctx, events


def test_a_passed_analysis_lets_the_switch_happen():
    probe = StandInProbe(VerdictStatus.PASSED)
    ctx, events = context(probe)
    verdicts = ctx.analyse("http://preview", 0.01, "preview of v2")
    assert [v.status for v in verdicts] == [VerdictStatus.PASSED]
    assert probe.started == ["http://preview"]
    assert [kind for kind, _, _ in events] == ["analysis"]


@pytest.mark.parametrize("status", [VerdictStatus.FAILED, VerdictStatus.INCONCLUSIVE])
def test_an_analysis_that_failed_or_could_not_measure_stops_the_switch(status):
    ctx, events = context(StandInProbe(status))
    with pytest.raises(GateFailed, match=f"analysis of preview of v2 by stand-in {status.value}"):
        ctx.analyse("http://preview", 0.01, "preview of v2")
    assert [kind for kind, _, _ in events] == ["analysis"]


def test_a_dry_run_probe_records_its_analysis_and_never_stops_the_switch():
    ctx, events = context(StandInProbe(VerdictStatus.INCONCLUSIVE), dry_run=True)
    ctx.analyse("http://preview", 0.01, "preview of v2")
    assert [kind for kind, _, _ in events] == ["analysis"]
