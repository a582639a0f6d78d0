"""The phases of an upgrade, declared once: what runs each, how it is gated, planned and undone.

:data:`PHASES` is the one table the orchestrator (:mod:`zdu.upgrade`) walks, in every walk:

* **run** (``zdu upgrade``, ``zdu resume``): each phase's ``run``, then its gate;
* **plan** (``zdu plan``): each phase's own ``plan`` steps, with the strategy's and layers' steps of
  that phase;
* **dry run** (``zdu plan --offline``): the ``run`` of the phases marked ``offline``, against a
  platform that only records what it would send;
* **rollback** (a failure before the point of no return, ``zdu rollback``): each phase's ``undo``,
  last phase first, for the phases before the point of no return, then the phases that also run
  ``after_rollback``;
* **migrate post** (``zdu migrate post``): the ``run`` of ``migrate(post)`` on its own.

======================  ============================================  ========  =================
phase                   runs                                          gate      rollback undoes
======================  ============================================  ========  =================
preflight               health, plan in the journal, probes start     due       (nothing changed)
migrate(pre)            regular migrations                            due       (additive: kept)
prepare                 traffic layers' prepare                       due       layers' rollback
rollout                 the strategy's rollout                        due       strategy rollback
verify                  only the release serves; probes watch         due       --
finalize                strategy's, then layers' finalize             forced    --
migrate(post)           post-deployment migrations (point of no       due       no rollback from
                        return), background migrations                          here on
cleanup                 the router's managed routes removed           none      (also after one)
======================  ============================================  ========  =================
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from zdu.context import ProbeGate, UpgradeContext
from zdu.errors import PreflightError
from zdu.gates import start_probes
from zdu.migrations import MigrationRunner, Stage, wait_for_background_migrations
from zdu.model import Phase
from zdu.platform import Platform, remove_managed_routes
from zdu.strategy import Step, Strategy, TrafficLayer

__all__ = ["PHASES", "Gate", "PhaseSettings", "PhaseSpec", "PhaseTable", "PhaseWork"]


class Gate(enum.Enum):
    """The gate at the end of a phase."""

    #: none: the phase ends the upgrade
    NONE = "none"
    #: the probes that are due are measured, and the platform's health checked
    DUE = "due"
    #: every probe is measured, waiting until it is due: the last look before the point of no return
    FORCED = "forced"


@attrs.frozen
class PhaseSettings:
    """The configuration the phases read (``upgrade.*`` and ``migrations.*``)."""

    defer_post: bool = False
    unsafe_early_post: bool = False
    wait_for_background_migrations: bool = False
    background_migrations_timeout: float = 0.0
    background_migrations_interval: float = 0.0


@attrs.frozen
class PhaseWork:
    """What the phases work on: the running upgrade's context and its parts.

    :ivar verify: the orchestrator's check that only the release serves (``verify``).
    :ivar check_no_older_instance: the orchestrator's check that no instance of an older version runs
        (before post-deployment migrations).
    """

    ctx: UpgradeContext
    platform: Platform
    strategy: Strategy
    layers: Sequence[TrafficLayer]
    runner: MigrationRunner | None
    gates: list[ProbeGate]
    verify: Callable[[UpgradeContext], None]
    check_no_older_instance: Callable[[UpgradeContext], None]
    settings: PhaseSettings = PhaseSettings()


# -- what runs each phase ---------------------------------------------------------------------------


def _preflight(work: PhaseWork) -> None:
    ctx = work.ctx
    problems = work.platform.check_health()
    if problems:
        raise PreflightError(f"the platform is unhealthy before the upgrade: {'; '.join(problems)}")
    for step in work.strategy.plan(ctx):
        ctx.event("plan", f"{step.phase}: {step.action} {step.detail}".strip())
    for layer in work.layers:
        for step in layer.plan(ctx):
            ctx.event("plan", f"{step.phase}: {step.action} {step.detail}".strip())
    start_probes(ctx, work.platform.url, work.gates)


def _migrate(ctx: UpgradeContext, runner: MigrationRunner | None, stage: Stage) -> None:
    if runner is None:
        ctx.event("migrations", f"no migration runner configured; {stage} stage skipped")
        return
    pending = runner.pending(stage)
    ctx.event("migrations-pending", f"{len(pending)} {stage} migrations pending", pending=pending)
    applied = runner.run(stage, ctx)
    ctx.event("migrations-applied", f"{len(applied)} {stage} migrations applied", applied=applied)


def _migrate_pre(work: PhaseWork) -> None:
    _migrate(work.ctx, work.runner, Stage.PRE)
    if work.settings.unsafe_early_post:
        work.ctx.event("unsafe", "UNSAFE: running post-deployment migrations before the rollout, as asked")
        _migrate(work.ctx, work.runner, Stage.POST)


def _prepare(work: PhaseWork) -> None:
    for layer in work.layers:
        layer.prepare(work.ctx)


def _rollout(work: PhaseWork) -> None:
    work.strategy.rollout(work.ctx)


def _verify(work: PhaseWork) -> None:
    work.verify(work.ctx)


def _finalize(work: PhaseWork) -> None:
    work.strategy.finalize(work.ctx)
    for layer in reversed(work.layers):
        layer.finalize(work.ctx)


def _migrate_post(work: PhaseWork) -> None:
    ctx, runner = work.ctx, work.runner
    if runner is not None and work.settings.defer_post:
        ctx.event(
            "migrations",
            f"post-deployment migrations deferred ({len(runner.pending(Stage.POST))} pending): "
            "run 'zdu migrate post CONFIG' once you are ready",
        )
    else:
        work.check_no_older_instance(ctx)
        _migrate(ctx, runner, Stage.POST)
    if runner is not None and work.settings.wait_for_background_migrations:
        wait_for_background_migrations(
            runner,
            ctx,
            timeout=work.settings.background_migrations_timeout,
            interval=work.settings.background_migrations_interval,
        )


def _cleanup(work: PhaseWork) -> None:
    remove_managed_routes(work.platform)


# -- what rollback undoes ---------------------------------------------------------------------------


def _undo_prepare(work: PhaseWork) -> None:
    for layer in reversed(work.layers):
        layer.rollback(work.ctx)


def _undo_rollout(work: PhaseWork) -> None:
    work.strategy.rollback(work.ctx)


# -- what the plan shows of each phase (beside the strategy's and the layers' steps) ----------------


def _nothing_planned(work: PhaseWork) -> Iterable[Step]:
    return ()


def _plan_preflight(work: PhaseWork) -> Iterable[Step]:
    return [Step("preflight", "check", "versions, platform health, probes start")]


def _plan_migrate_pre(work: PhaseWork) -> Iterable[Step]:
    runner = work.runner
    return [Step("migrate(pre)", "migrate", name) for name in runner.pending(Stage.PRE)] if runner else []


def _plan_verify(work: PhaseWork) -> Iterable[Step]:
    return [Step("verify", "verify", f"only {work.ctx.release.version} serves; probes gate")]


def _plan_migrate_post(work: PhaseWork) -> Iterable[Step]:
    if work.runner is None:
        return []
    action = "deferred" if work.settings.defer_post else "migrate"
    return [Step("migrate(post)", action, name) for name in work.runner.pending(Stage.POST)]


def _plan_cleanup(work: PhaseWork) -> Iterable[Step]:
    return [Step("cleanup", "cleanup", "remove managed routes, stop probes")]


# -- the table --------------------------------------------------------------------------------------


@attrs.frozen
class PhaseSpec:
    """One phase: what runs it, the gate at its end, what the plan shows, what rollback undoes.

    :ivar run: does the phase's work.
    :ivar gate: the gate at its end.
    :ivar plan: the core's own steps of the phase in ``zdu plan`` (the strategy's and the layers' steps
        of the phase come after them).
    :ivar undo: what a rollback does for this phase (``None``: nothing to undo); called only for the
        phases before the point of no return, last phase first, whether or not the phase had run
        (every undo is idempotent).
    :ivar offline: part of ``zdu plan --offline``'s dry run (it changes the platform).
    :ivar point_of_no_return: once this phase has started, the upgrade can no longer be rolled back.
    :ivar changes_nothing: bad input found in this phase fails the upgrade without a rollback.
    :ivar reruns_on_resume: run again when an upgrade resumes, even if it had finished.
    :ivar after_rollback: run again after a rollback's undos.
    """

    phase: Phase
    run: Callable[[PhaseWork], None]
    gate: Gate = Gate.DUE
    plan: Callable[[PhaseWork], Iterable[Step]] = _nothing_planned
    undo: Callable[[PhaseWork], None] | None = None
    offline: bool = False
    point_of_no_return: bool = False
    changes_nothing: bool = False
    reruns_on_resume: bool = False
    after_rollback: bool = False

    def gate_at_end(self, ctx: UpgradeContext) -> None:
        """The gate at the end of the phase (raises when the upgrade must stop)."""
        if self.gate is not Gate.NONE:
            ctx.gate(f"end of {self.phase}", force=self.gate is Gate.FORCED)


class PhaseTable(Sequence[PhaseSpec]):
    """The phases in the order they run, and the walks every caller shares."""

    def __init__(self, *specs: PhaseSpec) -> None:
        self._specs = specs
        first = next((i for i, s in enumerate(specs) if s.point_of_no_return), len(specs))
        self._reversible = frozenset(s.phase for s in specs[:first])

    def __getitem__(self, index: int) -> PhaseSpec:  # type: ignore[override]
        return self._specs[index]

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[PhaseSpec]:
        return iter(self._specs)

    def spec(self, phase: Phase) -> PhaseSpec:
        """The row of ``phase``."""
        return next(s for s in self._specs if s.phase is phase)

    def rollback_possible(self, phase: Phase) -> bool:
        """Whether a failure in ``phase`` can still be rolled back (it is before the point of no return)."""
        return phase in self._reversible

    def past_the_point_of_no_return(self, started: Iterable[str]) -> Phase | None:
        """The phase, among the names of phases ``started``, from which no rollback is possible."""
        names = set(started)
        return next((s.phase for s in self._specs if s.point_of_no_return and str(s.phase) in names), None)

    def plan(self, work: PhaseWork) -> list[Step]:
        """Every step of the upgrade, phase by phase: the core's, then the layers' and the strategy's."""
        parts: list[Step] = []
        for layer in work.layers:
            parts.extend(step for step in layer.plan(work.ctx) if step.phase == str(Phase.PREPARE))
        parts.extend(work.strategy.plan(work.ctx))
        for layer in work.layers:
            parts.extend(step for step in layer.plan(work.ctx) if step.phase != str(Phase.PREPARE))
        steps: list[Step] = []
        for spec in self._specs:
            steps.extend(spec.plan(work))
            steps.extend(step for step in parts if step.phase == str(spec.phase))
        names = {str(spec.phase) for spec in self._specs}
        steps.extend(step for step in parts if step.phase not in names)
        return steps

    def dry_run(self, work: PhaseWork) -> None:
        """Run the phases that ``zdu plan --offline`` runs against a platform that only records."""
        for spec in self._specs:
            if spec.offline:
                spec.run(work)

    def roll_back(self, work: PhaseWork) -> None:
        """Undo every phase before the point of no return, last first; then run the closing phases."""
        for spec in reversed(self._specs):
            if spec.undo is not None and self.rollback_possible(spec.phase):
                spec.undo(work)
        for spec in self._specs:
            if spec.after_rollback:
                spec.run(work)


#: The phases of an upgrade, in order: the one declaration every walk reads.
PHASES = PhaseTable(
    PhaseSpec(Phase.PREFLIGHT, _preflight, plan=_plan_preflight, changes_nothing=True, reruns_on_resume=True),
    PhaseSpec(Phase.MIGRATE_PRE, _migrate_pre, plan=_plan_migrate_pre),
    PhaseSpec(Phase.PREPARE, _prepare, undo=_undo_prepare, offline=True),
    PhaseSpec(Phase.ROLLOUT, _rollout, undo=_undo_rollout, offline=True),
    PhaseSpec(Phase.VERIFY, _verify, plan=_plan_verify),
    PhaseSpec(Phase.FINALIZE, _finalize, gate=Gate.FORCED, offline=True),
    PhaseSpec(Phase.MIGRATE_POST, _migrate_post, plan=_plan_migrate_post, point_of_no_return=True),
    PhaseSpec(Phase.CLEANUP, _cleanup, gate=Gate.NONE, plan=_plan_cleanup, offline=True, after_rollback=True),
)
