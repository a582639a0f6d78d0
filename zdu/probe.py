"""The Probe interface: watching a Target during an upgrade, and judging it against an SLO.

The orchestrator starts every configured probe in ``preflight`` and stops it after ``cleanup`` (or
after a rollback). In between, at the end of every phase and after every step a strategy reports
(``ctx.gate(...)``), it asks each probe for a :class:`~zdu.model.Measurement` of the interval since the
previous one. Gate semantics follow Argo Rollouts' analysis: a probe whose failed measurements exceed
its ``failure_limit`` fails the gate (the upgrade rolls back while it can); one whose inconclusive
measurements exceed its ``inconclusive_limit`` pauses the upgrade for a person to decide; a
``dry_run`` probe records and reports, and never gates.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from zdu.model import Measurement, Release, Target, Verdict, Version

__all__ = ["GateAware", "GateSettings", "Probe", "ProbeContext"]


@attrs.frozen
class ProbeContext:
    """What a probe is told when it starts.

    :ivar url: where to send traffic: the router's URL, or a group's preview URL for an analysis.
    :ivar target: the deployment being upgraded.
    :ivar release: the version being rolled out.
    :ivar from_version: the version the deployment ran before the upgrade.
    """

    url: str
    target: Target
    release: Release
    from_version: Version


@attrs.frozen
class GateSettings:
    """How the orchestrator turns a probe's measurements into gate decisions (every probe has these).

    :ivar interval: seconds between two measurements of the probe (Argo's ``interval``); a gate asked
        for sooner than that skips the probe, except before the point of no return.
    :ivar failure_limit: failed measurements tolerated before the gate fails (Argo's ``failureLimit``).
    :ivar inconclusive_limit: inconclusive measurements tolerated before the upgrade pauses.
    :ivar dry_run: record and report only; never fail a gate.
    """

    interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    failure_limit: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    inconclusive_limit: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    dry_run: bool = False


@runtime_checkable
class Probe(Protocol):
    """Watches the Target during an upgrade and gives a verdict against an SLO."""

    @property
    def name(self) -> str:
        """The probe's name, as registered."""
        ...

    def start(self, ctx: ProbeContext) -> None:
        """Begin watching (for ``http``: start sending traffic in the background). Called once."""
        ...

    def measure(self) -> Measurement:
        """Judge what was seen since the previous call (or since ``start``). Must not block for long."""
        ...

    def stop(self) -> Verdict:
        """Stop watching and judge the whole run. Called once, also after a failure."""
        ...


@runtime_checkable
class GateAware(Protocol):
    """A probe that wants to know which gate it is measured at (optional, beside :class:`Probe`).

    The orchestrator calls :meth:`at_gate` at every gate, before it decides whether the probe is due;
    a probe that acts only at chosen gates (``qa``: after the first new instance serves, before
    finalize) uses it to know which gate the next :meth:`Probe.measure` is for, and returns ``True``
    to be measured at this gate even when its ``interval`` has not passed.
    """

    def at_gate(self, phase: str, step: str) -> bool:
        """Tell the probe the gate ``step`` of ``phase``; return whether it must be measured now."""
        ...
