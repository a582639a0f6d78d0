"""What strategies, layers and migration runners are given while an upgrade runs.

:class:`UpgradeContext` is their one handle on the upgrade: the platform, the versions, the journal
(through :meth:`UpgradeContext.event`), and the probes (through :meth:`UpgradeContext.gate`,
:meth:`UpgradeContext.wait` and :meth:`UpgradeContext.analyse`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import attrs

from zdu.errors import GateFailed, UpgradeInterrupted, ZduError
from zdu.model import (
    Event,
    Measurement,
    MeasurementStatus,
    Release,
    Target,
    Verdict,
    VerdictStatus,
    Version,
)
from zdu.platform import (
    AFFINITY,
    ASSET_STORE,
    INSTANCE_GROUPS,
    OMNIBUS_NODES,
    PREVIEW_ROUTE,
    SCALE_TOGETHER,
    TRAFFIC_SPLIT,
    WEIGHTS_PER_GROUP,
    Affinity,
    InstanceGroups,
    OmnibusNodes,
    Platform,
    PreviewRoute,
    RoutedGroups,
    RoutesAssets,
    ScalesTogether,
    ServesAssets,
    SplitsTraffic,
    platform_provides,
    require_capability,
)
from zdu.probe import GateAware, GateSettings, Probe, ProbeContext

__all__ = [
    "ABORT_EVENT",
    "PAUSE_EVENT",
    "PROMOTE_EVENT",
    "RESTORED_EVENT",
    "ProbeGate",
    "UpgradeAborted",
    "UpgradeContext",
    "UpgradeInfo",
    "UpgradePaused",
    "measurement_data",
]

#: The journal event ``zdu promote ID`` records: the running upgrade skips its remaining waits and
#: pauses (``data["full"]``: its remaining analysis and canary steps too).
PROMOTE_EVENT = "promote"
#: The journal event ``zdu pause ID`` records: the running upgrade stops at its next safe point, paused.
PAUSE_EVENT = "pause-requested"
#: The journal event ``zdu abort ID`` records: the running upgrade rolls back at its next safe point.
ABORT_EVENT = "abort-requested"
#: The journal event a strategy's rollback records once only the old version serves users again.
RESTORED_EVENT = "restored"

_SUCCESSFUL = MeasurementStatus.SUCCESSFUL


class UpgradePaused(ZduError):
    """The upgrade stops, paused, for a person to resume or roll back.

    Raised when a probe was inconclusive too often, when ``zdu pause ID`` asked for it, or when the
    process was asked to stop (Ctrl-C, SIGTERM).
    """


class UpgradeAborted(ZduError):
    """``zdu abort ID`` asked the running upgrade to roll back (before the point of no return)."""


@attrs.frozen
class UpgradeInfo:
    """Who an upgrade is, for observers: id, target, versions, strategy and layers."""

    id: str
    target: str
    from_version: str
    to_version: str
    strategy: str
    layers: tuple[str, ...] = ()


@attrs.define
class ProbeGate:
    """One running probe and its gate counters (Argo Rollouts' failureLimit / inconclusiveLimit)."""

    probe: Probe
    settings: GateSettings
    failures: int = 0
    inconclusives: int = 0
    measurements: list[Measurement] = attrs.field(factory=list)
    last: float = attrs.field(factory=time.monotonic)

    def due_in(self) -> float:
        """Seconds until the next measurement is due (0 when due now)."""
        return max(0.0, self.last + self.settings.interval - time.monotonic())

    def judge(self) -> Measurement:
        """Take a measurement and count it.

        A probe that cannot measure (its ``measure`` raised) gives an INCONCLUSIVE measurement naming
        the error: a probe that stopped measuring never passes a gate.
        """
        try:
            measurement = self.probe.measure()
        except Exception as error:
            now = time.time()
            measurement = Measurement(
                probe=self.probe.name,
                status=MeasurementStatus.INCONCLUSIVE,
                reasons=(f"the probe could not measure: {type(error).__name__}: {error}",),
                started_at=now,
                finished_at=now,
            )
        self.last = time.monotonic()
        self.measurements.append(measurement)
        if measurement.status is MeasurementStatus.FAILED:
            self.failures += 1
        elif measurement.status is MeasurementStatus.INCONCLUSIVE:
            self.inconclusives += 1
        return measurement

    @property
    def failed(self) -> bool:
        """Whether failed measurements went past the limit (never for a dry-run probe)."""
        return not self.settings.dry_run and self.failures > self.settings.failure_limit

    @property
    def inconclusive(self) -> bool:
        """Whether inconclusive measurements went past the limit (never for a dry-run probe)."""
        return not self.settings.dry_run and self.inconclusives > self.settings.inconclusive_limit


@attrs.define
class UpgradeContext:
    """The running upgrade, as strategies, layers and migration runners see it.

    :ivar info: the upgrade's id, target, versions, strategy and layers.
    :ivar target: the deployment being upgraded.
    :ivar release: the version being rolled out.
    :ivar from_version: the version the deployment ran when the upgrade started.
    :ivar platform: the platform the target runs on: its base (:class:`~zdu.platform.Platform`); reach
        a capability your plugin declared in ``requires`` through :attr:`instance_groups` and its
        siblings, never by downcasting.
    :ivar replicas: how many instances serve when the fleet is whole (the old group's size at start).
    :ivar dry_run: ``True`` while planning: nothing may be changed.
    """

    info: UpgradeInfo
    target: Target
    release: Release
    from_version: Version
    platform: Platform
    record_event: Callable[[str, str, dict[str, Any]], None]
    replicas: int = 1
    gates: Sequence[ProbeGate] = ()
    probe_factories: Sequence[tuple[Callable[[], Probe], GateSettings]] = ()
    cancel: threading.Event = attrs.field(factory=threading.Event)
    dry_run: bool = False
    phase: str = "preflight"
    gate_interval: float = 1.0
    #: the upgrade's journal events so far (for decisions taken from outside: ``zdu promote``)
    read_events: Callable[[], Sequence[Event]] = lambda: ()
    #: when this run of the upgrade began (``time.time()``): the operators' decisions journaled since
    #: then apply to it (``zdu pause``, ``zdu abort``, ``zdu promote``); earlier ones were for an
    #: earlier run
    controls_since: float = 0.0
    #: the phases in which an abort still rolls back (``None``: every phase); the orchestrator sets it
    reversible_phases: frozenset[str] | None = None
    _abort_refused: bool = attrs.field(default=False, init=False)

    # -- the platform's capabilities (declared in the plugin's ``requires``) --------------------------

    def provides(self, capability: str) -> bool:
        """Whether the platform provides ``capability`` (a name such as ``"traffic-split"``)."""
        return capability in platform_provides(self.platform)

    def _require(self, capability: str) -> None:
        layers = f", layers {', '.join(self.info.layers)}" if self.info.layers else ""
        require_capability(self.platform, capability, f"strategy {self.info.strategy!r}{layers}")

    @property
    def instance_groups(self) -> InstanceGroups:
        """The platform as ``instance-groups``: its groups, scaling, and the router in front of them.

        Raises :class:`~zdu.errors.UsageError` naming the capability when the platform lacks it (the
        configuration's check refuses such a pairing before anything runs, for declared requirements).
        """
        self._require(INSTANCE_GROUPS)
        return cast(InstanceGroups, self.platform)

    @property
    def preview_route(self) -> PreviewRoute:
        """The platform's router as ``preview-route`` (raises as :attr:`instance_groups` without it)."""
        self._require(PREVIEW_ROUTE)
        return cast(PreviewRoute, self.instance_groups.router)

    @property
    def affinity(self) -> Affinity:
        """The platform's router as ``affinity`` (raises as :attr:`instance_groups` without it)."""
        self._require(AFFINITY)
        return cast(Affinity, self.instance_groups.router)

    @property
    def traffic_split(self) -> SplitsTraffic:
        """The platform's router as ``traffic-split`` (raises as :attr:`instance_groups` without it)."""
        self._require(TRAFFIC_SPLIT)
        return cast(SplitsTraffic, self.instance_groups.router)

    @property
    def asset_store(self) -> ServesAssets:
        """The platform as ``asset-store``: its ``assets`` and a router that routes to them."""
        self._require(ASSET_STORE)
        return cast(ServesAssets, self.platform)

    @property
    def assets_route(self) -> RoutesAssets:
        """The platform's router as the route to its asset store (part of ``asset-store``)."""
        return cast(RoutesAssets, self.asset_store.router)

    @property
    def scale_together(self) -> ScalesTogether:
        """The platform as ``scale-together`` (raises as :attr:`instance_groups` without it)."""
        self._require(SCALE_TOGETHER)
        return cast(ScalesTogether, self.platform)

    @property
    def omnibus_nodes(self) -> OmnibusNodes:
        """The platform as ``omnibus-nodes`` (raises as :attr:`instance_groups` without it)."""
        self._require(OMNIBUS_NODES)
        return cast(OmnibusNodes, self.platform)

    @property
    def old_group(self) -> str:
        """The platform's name for the group of the version the upgrade started from (``instance-groups``)."""
        return self.instance_groups.group_name(self.from_version)

    @property
    def new_group(self) -> str:
        """The platform's name for the group of the release (``instance-groups``)."""
        return self.instance_groups.group_name(self.release.version)

    def event(self, kind: str, message: str, **data: Any) -> None:
        """Record an event in the journal (and tell observers). ``data`` must be JSON-ready."""
        self.record_event(kind, message, data)

    @contextlib.contextmanager
    def step(self, action: str, **data: Any) -> Iterator[None]:
        """Record ``action`` in the journal before it starts and after it ends (or fails)."""
        self.event("step-started", action, **data)
        try:
            yield
        except BaseException as error:
            self.event("step-failed", f"{action}: {error}", **data)
            raise
        self.event("step-finished", action, **data)

    def check_cancelled(self) -> None:
        """Raise :class:`~zdu.errors.UpgradeInterrupted` when the upgrade was asked to stop.

        The process was asked to stop (Ctrl-C, SIGTERM): the orchestrator marks the upgrade paused,
        resumable with ``zdu resume ID``.
        """
        if self.cancel.is_set():
            raise UpgradeInterrupted("the upgrade was interrupted")

    def controls(self) -> list[Event]:
        """The operators' decisions journaled for this run: pause, abort and promote events, in order."""
        if self.dry_run:
            return []
        kinds = {PAUSE_EVENT, ABORT_EVENT, PROMOTE_EVENT}
        return [e for e in self.read_events() if e.kind in kinds and e.at >= self.controls_since]

    def check_controls(self, step: str = "") -> None:
        """Act on ``zdu pause ID`` and ``zdu abort ID`` at a safe point (a gate, a phase boundary).

        Raises :class:`UpgradePaused` for a pause and :class:`UpgradeAborted` for an abort. An abort
        that comes after the point of no return is refused (journaled once as ``abort-refused``) and
        the upgrade goes on.
        """
        for event in self.controls():
            by = str(event.data.get("by") or "someone")
            where = f" (at {step})" if step else ""
            if event.kind == PAUSE_EVENT:
                self.event("paused", f"paused by {by}{where}", by=by, requested_at=event.at)
                raise UpgradePaused(
                    f"paused by {by}{where}: resume with 'zdu resume {self.info.id}' "
                    f"or roll back with 'zdu rollback {self.info.id}'"
                )
            if event.kind == ABORT_EVENT:
                if self.reversible_phases is None or self.phase in self.reversible_phases:
                    self.event("aborted", f"aborted by {by}{where}", by=by, requested_at=event.at)
                    raise UpgradeAborted(f"aborted by {by}")
                if not self._abort_refused:
                    self._abort_refused = True
                    self.event(
                        "abort-refused",
                        f"abort by {by} refused: {self.phase} is past the point of no return",
                        by=by,
                        requested_at=event.at,
                    )

    def promoted(self, *, full: bool = False) -> str | None:
        """Who promoted this run (``zdu promote ID``; ``full``: ``zdu promote --full ID``), or None.

        Once promoted, every remaining wait and pause is skipped; once fully promoted, every remaining
        analysis and canary step too.
        """
        for event in self.controls():
            if event.kind == PROMOTE_EVENT and (event.data.get("full") or not full):
                return str(event.data.get("by") or "someone")
        return None

    def gate(self, step: str, *, force: bool = False) -> None:
        """Measure every probe that is due and check the platform's health; raise when the upgrade must stop.

        Strategies call this after every step that changes what serves traffic. A probe measured less
        than its ``interval`` ago is skipped, unless ``force`` is set: then the gate waits until it is
        due (the orchestrator forces a gate before the point of no return). Raises
        :class:`~zdu.errors.GateFailed` when a probe went past its failure limit or the platform
        reports a problem (an instance died), and :class:`UpgradePaused` when a probe went past its
        inconclusive limit.
        """
        self.check_cancelled()
        self.check_controls(step)
        problems = self.platform.check_health()
        if problems:
            self.event(
                "gate-failed", f"after {step}: platform unhealthy: {'; '.join(problems)}", problems=problems
            )
            raise GateFailed(f"after {step}: platform unhealthy: {'; '.join(problems)}")
        share: float | None = None
        for gate in self.gates:
            wanted = isinstance(gate.probe, GateAware) and gate.probe.at_gate(self.phase, step)
            if force and not wanted and self.cancel.wait(gate.due_in()):
                self.check_cancelled()
            if gate.due_in() > 0 and not wanted:
                continue
            measurement = gate.judge()
            share = self.new_version_share() if share is None else share
            data = measurement_data(measurement, step, share)
            # every measurement with something to show, passed ones too: reports plot them and show
            # each decision's value
            if measurement.values or measurement.evaluations or measurement.status is not _SUCCESSFUL:
                self.event(
                    f"measurement-{measurement.status.value}", f"{measurement.probe} after {step}", **data
                )
            if gate.failed:
                reasons = "; ".join(measurement.reasons) or "failed"
                self.event("gate-failed", f"probe {measurement.probe} after {step}: {reasons}", **data)
                raise GateFailed(f"probe {measurement.probe} failed after {step}: {reasons}")
            if gate.inconclusive:
                self.event("paused", f"probe {measurement.probe} inconclusive after {step}", **data)
                raise UpgradePaused(
                    f"probe {measurement.probe} was inconclusive {gate.inconclusives} times after {step}; "
                    "a person must decide: resume or roll back"
                )

    def new_version_share(self) -> float:
        """The release's share of the router's traffic now (0 to 1; -1 when unknown).

        Read from a platform with groups behind a router (:class:`~zdu.platform.RoutedGroups`), by what
        its weights mean (:attr:`~zdu.platform.Router.weight_semantics`): per group, a group's share is
        its weight over the sum; otherwise (per instance, on/off) every ready instance of a group gets
        its group's weight. -1 on a platform without groups.
        """
        platform = self.platform
        if not isinstance(platform, RoutedGroups):
            return -1.0
        try:
            router = platform.router
            weights = router.weights()
            ready = {g.name: g.ready for g in platform.groups()}
            per_group = router.weight_semantics == WEIGHTS_PER_GROUP
        except (ZduError, OSError, NotImplementedError, AttributeError):
            return -1.0
        shares = {
            name: max(weight, 0) * (min(ready.get(name, 0), 1) if per_group else ready.get(name, 0))
            for name, weight in weights.items()
        }
        total = sum(shares.values())
        new_group = platform.group_name(self.release.version)
        return round(shares.get(new_group, 0) / total, 4) if total else 0.0

    def wait(self, seconds: float, step: str) -> None:
        """Wait ``seconds`` while gating every ``gate_interval`` (``blue-green``'s scale-down delay).

        Ends early once ``zdu promote ID`` is journaled (:meth:`promoted`). While planning
        (:attr:`dry_run`), nothing waits.
        """
        if self.dry_run:
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if (by := self.promoted()) is not None:
                self.event(
                    "wait-skipped", f"{step}: promoted by {by}, {left:.0f}s of waiting skipped", step=step
                )
                return
            if self.cancel.wait(min(left, self.gate_interval)):
                self.check_cancelled()
            self.gate(step)

    def analyse(self, url: str, seconds: float, step: str) -> list[Verdict]:
        """Run a fresh instance of every probe against ``url`` for ``seconds``; raise unless all passed.

        A FAILED or INCONCLUSIVE verdict (of a probe not in dry run) raises :class:`GateFailed`.
        ``zdu promote --full ID`` skips it (or cuts it short), returning no verdict; ``zdu pause`` and
        ``zdu abort`` are acted on while it runs.

        ``blue-green`` uses this to verify the new set through its preview URL before the switch
        (Argo Rollouts' pre-promotion analysis).
        """
        if (by := self.promoted(full=True)) is not None:
            self.event("analysis-skipped", f"analysis of {step} skipped: fully promoted by {by}", step=step)
            return []
        probes = []
        context = ProbeContext(
            url=url, target=self.target, release=self.release, from_version=self.from_version
        )
        skipped_by: str | None = None
        try:
            for factory, settings in self.probe_factories:
                probe = factory()
                probe.start(context)
                probes.append((probe, settings))
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                if self.cancel.wait(min(left, self.gate_interval)):
                    self.check_cancelled()
                self.check_controls(step)
                if (skipped_by := self.promoted(full=True)) is not None:
                    break
        finally:
            verdicts = [(_stopped(probe), settings) for probe, settings in probes]
        if skipped_by is not None:
            self.event(
                "analysis-skipped", f"analysis of {step} cut short: fully promoted by {skipped_by}", step=step
            )
            return []
        for verdict, settings in verdicts:
            self.event(
                "analysis",
                f"{verdict.probe} against {url}: {verdict.status.value}",
                step=step,
                values=dict(verdict.values),
                reasons=list(verdict.reasons),
            )
            # an analysis decides a switch of traffic: one that could not measure (inconclusive, for
            # instance a probe whose traffic died) does not let the switch happen
            if verdict.status in (VerdictStatus.FAILED, VerdictStatus.INCONCLUSIVE) and not settings.dry_run:
                reasons = "; ".join(verdict.reasons)
                raise GateFailed(f"analysis of {step} by {verdict.probe} {verdict.status.value}: {reasons}")
        return [verdict for verdict, _ in verdicts]

    def promotions(self) -> int:
        """How many times ``zdu promote`` was recorded for this upgrade so far."""
        return sum(1 for event in self.read_events() if event.kind == PROMOTE_EVENT)

    def wait_for_promotion(self, step: str, *, seen: int) -> int:
        """Gate every ``gate_interval`` until a promotion beyond the first ``seen`` is journaled.

        ``zdu promote ID`` records the decision in the journal; the running upgrade reads it here
        (canary's indefinite pause, Argo Rollouts' ``pause: {}``, a strategy's manual pause step). A
        promotion of this run already journaled (:meth:`promoted`) ends it at once: a promotion skips
        every remaining pause. Returns the promotions counted, to pass as ``seen`` to the next pause.
        Nothing waits while planning.
        """
        if self.dry_run:
            return seen
        if (by := self.promoted()) is not None:
            self.event("promoted", f"{step}: promoted by {by} before it", step=step, by=by)
            return self.promotions()
        self.event("paused-for-promotion", f"{step}: waiting for 'zdu promote {self.info.id}'", step=step)
        while self.promotions() <= seen and self.promoted() is None:
            if self.cancel.wait(self.gate_interval):
                self.check_cancelled()
            self.gate(step)
        by = self.promoted() or "someone"
        self.event("promoted", f"{step}: promoted by {by}", step=step, by=by)
        return self.promotions()

    def restored(self, group: str) -> None:
        """Journal that only ``group`` (the old version) serves users again: a rollback's routing is done.

        Strategies call it in ``rollback`` right after the routing change, so that the time from the
        decision to roll back to users being safe again can be read from the journal (``restored``).
        """
        self.event(RESTORED_EVENT, f"only {group} serves users again", group=group)


def _stopped(probe: Probe) -> Verdict:
    """Stop ``probe``; a probe that fails to stop gives an INCONCLUSIVE verdict naming the error."""
    try:
        return probe.stop()
    except Exception as error:
        return Verdict(
            probe=probe.name,
            status=VerdictStatus.INCONCLUSIVE,
            reasons=(f"the probe failed to stop: {type(error).__name__}: {error}",),
        )


def measurement_data(measurement: Measurement, step: str, new_share: float = -1.0) -> dict[str, Any]:
    """The journal's data of one measurement: status, figures, reasons, checks, window and share."""
    return {
        "probe": measurement.probe,
        "status": measurement.status.value,
        "values": dict(measurement.values),
        "reasons": list(measurement.reasons),
        "evaluations": [dict(e) for e in measurement.evaluations],
        "started_at": measurement.started_at,
        "finished_at": measurement.finished_at,
        "new_share": new_share,
        "step": step,
    }
