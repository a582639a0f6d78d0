"""What an upgrade writes down: its journal entries, the observers' hooks, and its report at the end.

The orchestrator (:mod:`zdu.upgrade`) decides; a :class:`Recorder` keeps the record of one upgrade: it
records each event in the journal and tells the observers, opens and closes each phase (journal phase,
``phase-started``, ``phase-finished`` or ``phase-failed`` events, the lifecycle hooks, the phase's
duration), and at the end builds the :class:`~zdu.model.Report`, writes it to the journal and tells the
observers and the notifiers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from zdu.context import UpgradeContext, UpgradeInfo
from zdu.journal import Journal
from zdu.model import Phase, Report, UpgradeStatus, Verdict
from zdu.notify import notification_of
from zdu.registry import ZduPluginManager

__all__ = ["Recorder"]


class Recorder:
    """The record of one upgrade: journal writes and observer hooks, in the order they happen.

    :param journal: where the upgrade is recorded.
    :param manager: the plugin manager whose observers are told.
    :param info: the upgrade's id, target, versions, strategy and layers.
    :param trigger: what the end's notification says started this run (``"upgrade"``,
        ``"manual rollback"``).
    :param started: when the run started (``time.time()``), for the report.
    """

    def __init__(
        self, journal: Journal, manager: ZduPluginManager, info: UpgradeInfo, trigger: str, started: float
    ) -> None:
        self.journal = journal
        self.manager = manager
        self.info = info
        self.trigger = trigger
        self.started = started
        #: every phase run so far, with its duration in seconds, for the report
        self.phases: list[tuple[str, float]] = []

    def started_upgrade(self) -> None:
        """Tell the observers the upgrade (or its resumption) has started."""
        self.manager.notify("zdu_upgrade_started", upgrade=self.info)

    def record(self, phase: str, kind: str, message: str, data: dict[str, Any]) -> None:
        """Record an event of ``phase`` in the journal, then tell the observers."""
        event = self.journal.record(self.info.id, phase, kind, message, data)
        self.manager.notify("zdu_event", upgrade=self.info, event=event)

    @contextlib.contextmanager
    def phase(self, ctx: UpgradeContext, phase: Phase) -> Iterator[None]:
        """Run the body as ``phase``: recorded before it starts and after it ends, however it ends."""
        name = str(phase)
        ctx.phase = name
        self.journal.set_phase(self.info.id, name)
        ctx.event("phase-started", f"{name} started", phase=name)
        self.manager.notify("zdu_phase_started", upgrade=self.info, phase=name)
        begun = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "succeeded"
        finally:
            duration = time.monotonic() - begun
            self.phases.append((name, duration))
            ctx.event(
                f"phase-{'finished' if outcome == 'succeeded' else 'failed'}", f"{name} {outcome}", phase=name
            )
            self.manager.notify(
                "zdu_phase_finished", upgrade=self.info, phase=name, outcome=outcome, duration_s=duration
            )

    def finish(
        self, status: UpgradeStatus, error: str | None, verdicts: list[Verdict] | None = None
    ) -> Report:
        """Build the report, record the end in the journal, and tell the observers and the notifiers."""
        info = self.info
        report = Report(
            upgrade_id=info.id,
            target=info.target,
            from_version=info.from_version,
            to_version=info.to_version,
            strategy=info.strategy,
            layers=info.layers,
            status=status,
            started_at=self.started,
            finished_at=time.time(),
            phases=tuple(self.phases),
            verdicts=tuple(verdicts or ()),
            error=error,
        )
        self.journal.finish(info.id, status, report=report.to_dict(), error=error)
        self.manager.notify("zdu_upgrade_finished", upgrade=info, report=report)
        self.manager.notify("zdu_notify", notification=notification_of(info, report, self.trigger))
        return report
