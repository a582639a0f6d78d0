"""The core's own lifecycle observer: logs every phase and event through :mod:`logging`."""

from __future__ import annotations

import logging

from zdu.context import UpgradeInfo
from zdu.model import Event, Report
from zdu.records import hookimpl

log = logging.getLogger("zdu.upgrade")


@hookimpl
def zdu_upgrade_started(upgrade: UpgradeInfo) -> None:
    """Log the start of an upgrade."""
    log.info(
        "upgrade %s of %s: %s -> %s with %s",
        upgrade.id,
        upgrade.target,
        upgrade.from_version,
        upgrade.to_version,
        " + ".join((upgrade.strategy, *upgrade.layers)),
    )


@hookimpl
def zdu_phase_started(upgrade: UpgradeInfo, phase: str) -> None:
    """Log the start of a phase."""
    log.info("%s: %s started", upgrade.id, phase)


@hookimpl
def zdu_phase_finished(upgrade: UpgradeInfo, phase: str, outcome: str, duration_s: float) -> None:
    """Log the end of a phase."""
    log.info("%s: %s %s in %.1fs", upgrade.id, phase, outcome, duration_s)


@hookimpl
def zdu_event(upgrade: UpgradeInfo, event: Event) -> None:
    """Log an event."""
    level = logging.WARNING if event.kind in {"gate-failed", "error", "rollback"} else logging.INFO
    log.log(level, "%s: [%s] %s", upgrade.id, event.phase, event.message)


@hookimpl
def zdu_upgrade_finished(upgrade: UpgradeInfo, report: Report) -> None:
    """Log how the upgrade ended."""
    log.info("%s", report.summary())
