"""The probes that gate an upgrade: started in ``preflight``, stopped when the upgrade ends.

Each probe is wrapped in a :class:`~zdu.context.ProbeGate` (its gate settings and counts); the
context's :meth:`~zdu.context.UpgradeContext.gate` measures them after every step and at the end of
every phase. This module starts them and stops them, collecting each one's verdict for the report.
"""

from __future__ import annotations

import logging

import attrs

from zdu.context import ProbeGate, UpgradeContext
from zdu.model import Verdict, VerdictStatus
from zdu.probe import ProbeContext

__all__ = ["start_probes", "stop_probes"]

log = logging.getLogger("zdu.upgrade")


def start_probes(ctx: UpgradeContext, url: str, gates: list[ProbeGate]) -> None:
    """Start every configured probe against ``url``, adding its gate to ``gates``."""
    probe_context = ProbeContext(
        url=url,
        target=ctx.target,
        release=ctx.release,
        from_version=ctx.from_version,
    )
    for factory, settings in ctx.probe_factories:
        probe = factory()
        probe.start(probe_context)
        gates.append(ProbeGate(probe=probe, settings=settings))
        ctx.event("probe-started", f"probe {probe.name} started against {probe_context.url}")


def stop_probes(gates: list[ProbeGate]) -> list[Verdict]:
    """Stop every started probe and return their verdicts (a dry-run probe's marked as such).

    Never raises: a probe that fails to stop gives an INCONCLUSIVE verdict naming the error, and the
    other probes are still stopped, so that one probe hides neither another's verdict nor the error
    that ended the upgrade (this runs in the orchestrator's ``finally``).
    """
    verdicts = []
    for gate in gates:
        try:
            verdict = gate.probe.stop()
        except Exception as error:
            log.exception("probe %s failed to stop", gate.probe.name)
            verdict = Verdict(
                probe=gate.probe.name,
                status=VerdictStatus.INCONCLUSIVE,
                reasons=(f"the probe failed to stop: {type(error).__name__}: {error}",),
            )
        verdicts.append(attrs.evolve(verdict, dry_run=gate.settings.dry_run))
    return verdicts
