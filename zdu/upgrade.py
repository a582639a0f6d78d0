"""The orchestrator: runs an upgrade's phases in order, gates each, and rolls back while it can.

The control flow is one loop over the phase table, :data:`zdu.phases.PHASES`::

    preflight → migrate(pre) → prepare → rollout → verify → finalize → migrate(post) → cleanup

Each row of the table says what runs the phase, the gate at its end, what ``zdu plan`` shows of it and
what a rollback undoes; :meth:`Upgrade.run` walks it (:meth:`Upgrade._run_phases`), and so do
:meth:`Upgrade.plan`, the offline dry run, the rollback and :meth:`Upgrade.migrate_post`. Probes start
in ``preflight`` and run until the upgrade ends; strategies gate after each of their steps too. A
failure before ``migrate(post)`` rolls back (the strategy puts the old version back, then the layers
switch off); from ``migrate(post)`` on there is no way back and the upgrade is left failed, for a
person to roll forward. The journal records every phase and step before and after it happens
(:class:`zdu.recorder.Recorder`), so an interrupted upgrade can be resumed (``Upgrade.run(resume=ID)``)
from the phase it was in: each phase is idempotent.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from zdu.config import UpgradeConfig, load_config
from zdu.context import (
    PAUSE_EVENT,
    ProbeGate,
    UpgradeAborted,
    UpgradeContext,
    UpgradeInfo,
    UpgradePaused,
)
from zdu.errors import (
    GateFailed,
    PreflightError,
    RollbackRefused,
    UpgradeInterrupted,
    UsageError,
    ZduError,
)
from zdu.gates import stop_probes
from zdu.journal import Journal
from zdu.migrations import (
    MigrationEnv,
    MigrationRunner,
    check_background_migrations,
)
from zdu.model import Phase, Report, UpgradeStatus, Version
from zdu.outputs import serving_outputs
from zdu.phases import PHASES, PhaseSettings, PhaseWork
from zdu.platform import (
    DryRunsChanges,
    Platform,
    PlatformEnv,
    RecordsChanges,
    ReportsLockLoss,
    RoutedGroups,
    running_versions,
)
from zdu.policy import check_upgrade_path
from zdu.probe import GateSettings, Probe
from zdu.recorder import Recorder
from zdu.registry import ZduPluginManager, get_plugin_manager
from zdu.strategy import Step, Strategy, TrafficLayer

__all__ = ["Plan", "Upgrade", "current_version", "default_actor"]

log = logging.getLogger("zdu.upgrade")

#: The phases in which an abort still rolls back (before the point of no return).
_REVERSIBLE = frozenset(str(spec.phase) for spec in PHASES if PHASES.rollback_possible(spec.phase))


@attrs.frozen
class Plan:
    """What an upgrade would do, phase by phase (``zdu plan``)."""

    target: str
    from_version: str
    to_version: str
    strategy: str
    layers: tuple[str, ...]
    steps: tuple[Step, ...]
    #: with an offline snapshot: every object the platform would send, in order (its own JSON)
    changes: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "target": self.target,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "strategy": self.strategy,
            "layers": list(self.layers),
            "steps": [attrs.asdict(step) for step in self.steps],
            "changes": list(self.changes),
        }


def current_version(platform: Platform) -> Version | None:
    """The version the platform serves now: its only serving version (``None`` when unclear)."""
    serving = platform.serving_versions()
    return serving[0] if len(serving) == 1 else None


class Upgrade:
    """One attempt to bring a Target to a Release.

    Build it from configuration (:meth:`from_config`) and call :meth:`run`, which blocks until the
    upgrade has succeeded, rolled back, failed or paused, and returns a :class:`~zdu.model.Report`.
    Progress is told to observers through the lifecycle hooks.
    """

    def __init__(
        self,
        config: UpgradeConfig,
        manager: ZduPluginManager | None = None,
        *,
        journal: Journal | None = None,
        verify_seconds: float = 2.0,
        unsafe_run_post_migrations_before_rollout: bool = False,
    ) -> None:
        """Prepare an upgrade (nothing runs before :meth:`run`).

        :param config: the whole upgrade, as :func:`zdu.config.load_config` builds it.
        :param manager: the plugin manager (default: a fresh one with every installed plugin).
        :param journal: the journal (default: the one in the configuration's state directory).
        :param verify_seconds: how long the ``verify`` phase watches the probes with only the new
            version serving.
        :param unsafe_run_post_migrations_before_rollout: UNSAFE, for demonstrating the hazard only:
            run the post-deployment migrations right after the regular ones, while the old version still
            serves. It breaks the old version. Deliberately not reachable from configuration or the
            command line.
        """
        self.config = config
        self.unsafe_early_post = unsafe_run_post_migrations_before_rollout
        self.manager = manager or get_plugin_manager()
        self.journal = journal or Journal(config.journal_path)
        self.verify_seconds = verify_seconds
        self.cancel = threading.Event()
        self._platform: Platform | None = None
        self._offline_snapshot: Path | None = None
        # the target's lock lost while held (the reason), and the upgrade to pause for it
        self._lock_guard = threading.Lock()
        self._lock_lost: str | None = None
        self._running_id: str | None = None
        #: where the metrics are served while :meth:`run` runs (``upgrade.metrics_address``)
        self.metrics_url: str | None = None

    @classmethod
    def from_config(
        cls, source: Path | str | Mapping[str, Any], manager: ZduPluginManager | None = None
    ) -> Upgrade:
        """Read ``source`` (a TOML file or a mapping).

        Raises :class:`~zdu.errors.ConfigError` naming every bad field, before anything changes.
        """
        manager = manager or get_plugin_manager()
        return cls(load_config(source, manager), manager)

    # -- building the parts ------------------------------------------------------------------------

    @property
    def platform(self) -> Platform:
        """The target's platform (built on first use)."""
        if self._platform is None:
            spec = self.config.platform
            env = PlatformEnv(
                target=self.config.target,
                state_dir=self.config.target_state_dir,
                release=self.config.release.version,
                offline_snapshot=self._offline_snapshot,
            )
            self._platform = spec.build(env)
            if self._offline_snapshot is not None and not isinstance(self._platform, RecordsChanges):
                raise UsageError(f"platform {spec.name!r} cannot plan offline (--offline)")
        return self._platform

    def _strategy(self) -> Strategy:
        spec = self.config.strategy
        strategy: Strategy = spec.build()
        return strategy

    def _layers(self) -> list[TrafficLayer]:
        return [spec.build() for spec in self.config.layers]

    def _runner(self) -> MigrationRunner | None:
        spec = self.config.migrations
        if spec is None:
            return None
        env = MigrationEnv(
            target=self.config.target,
            platform=self.platform,
            state_dir=self.config.target_state_dir,
            config_dir=self.config.source.parent if self.config.source is not None else None,
        )
        runner: MigrationRunner = spec.build(env)
        return runner

    def _probe_factories(self) -> list[tuple[Callable[[], Probe], GateSettings]]:
        return [(spec.build, spec.gate) for spec in self.config.probes]

    def _replicas(self, from_version: Version, upgrade_id: str | None = None) -> int:
        """The fleet's whole size: recorded when the upgrade began, else the old group's size now."""
        if upgrade_id is not None:
            for event in self.journal.events(upgrade_id):
                if event.kind == "replicas":
                    return int(event.data["replicas"])
        platform = self.platform
        if not isinstance(platform, RoutedGroups):
            return 1
        name = platform.group_name(from_version)
        return max((g.replicas for g in platform.groups() if g.name == name), default=1)

    def _context(
        self, recorder: Recorder, from_version: Version, gates: list[ProbeGate], replicas: int = 1
    ) -> UpgradeContext:
        """The context of this run: operators' decisions journaled since it began apply to it."""
        info = recorder.info

        def record(kind: str, message: str, data: dict[str, Any]) -> None:
            recorder.record(context.phase, kind, message, data)

        context = UpgradeContext(
            info=info,
            target=self.config.target,
            release=self.config.release,
            from_version=from_version,
            platform=self.platform,
            record_event=record,
            replicas=replicas,
            gates=gates,
            probe_factories=self._probe_factories(),
            cancel=self.cancel,
            read_events=lambda: self.journal.events(info.id),
            controls_since=recorder.started,
            reversible_phases=_REVERSIBLE,
        )
        return context

    # -- planning ----------------------------------------------------------------------------------

    def _from_version(self) -> Version:
        running = current_version(self.platform)
        configured = self.config.target.version
        if running is None:
            serving = ", ".join(str(v) for v in self.platform.serving_versions()) or "none"
            raise PreflightError(
                f"target {self.config.target.name!r}: the platform serves no single version now "
                f"(serving: {serving}); for the local platform, start the fleet with 'zdu local up CONFIG'"
            )
        if running not in (configured, self.config.release.version):
            raise PreflightError(
                f"target.version is {configured} but {self.config.target.name!r} runs {running}: "
                "correct target.version"
            )
        return configured

    def _check_versions(self, from_version: Version, runner: MigrationRunner | None) -> None:
        check_upgrade_path(from_version, self.config.release.version)
        # GitLab: batched background migrations must be finished before the next upgrade
        check_background_migrations(runner)

    def plan(self, offline: Path | None = None) -> Plan:
        """What :meth:`run` would do now, step by step, without changing anything.

        :param offline: a snapshot of the platform's objects to plan against instead of the live
            platform; the plan then also lists every object the platform would send
            (:attr:`Plan.changes`), from a dry run of the layers' and the strategy's steps on it.
        """
        if offline is not None:
            if self._platform is not None:
                raise UsageError("plan(offline=...) must come before the platform is used")
            self._offline_snapshot = offline
        platform = self.platform
        # on the live platform, every change a plan makes (a status command's Job, say) is only checked
        checked = platform.dry_run() if isinstance(platform, DryRunsChanges) else contextlib.nullcontext()
        with checked:
            from_version = self._from_version()
            runner = self._runner()
            self._check_versions(from_version, runner)
            recorder = Recorder(
                self.journal, self.manager, self._info("plan", from_version), "plan", time.time()
            )
            context = self._context(recorder, from_version, [], self._replicas(from_version))
            context.dry_run = True
            work = self._work(context, self._strategy(), self._layers(), runner, [])
            steps = PHASES.plan(work)
            changes: list[dict[str, Any]] = []
            if offline is not None:
                changes = self._dry_run(work)
        return Plan(
            target=self.config.target.name,
            from_version=str(from_version),
            to_version=str(self.config.release.version),
            strategy=self.config.strategy.name,
            layers=tuple(layer.name for layer in self.config.layers),
            steps=tuple(steps),
            changes=tuple(changes),
        )

    def _dry_run(self, work: PhaseWork) -> list[dict[str, Any]]:
        """Run the table's offline phases on the offline platform; return what it recorded."""
        platform = self.platform
        assert isinstance(platform, RecordsChanges)
        ctx = attrs.evolve(work.ctx, record_event=lambda *_: None, probe_factories=(), gates=())
        PHASES.dry_run(attrs.evolve(work, ctx=ctx, strategy=self._strategy()))
        return platform.recorded_changes()

    def _work(
        self,
        ctx: UpgradeContext,
        strategy: Strategy,
        layers: list[TrafficLayer],
        runner: MigrationRunner | None,
        gates: list[ProbeGate],
    ) -> PhaseWork:
        """What the phases of the table work on, for this upgrade."""
        config = self.config
        return PhaseWork(
            ctx=ctx,
            platform=self.platform,
            strategy=strategy,
            layers=layers,
            runner=runner,
            gates=gates,
            verify=self._verify,
            check_no_older_instance=self._check_no_older_instance,
            settings=PhaseSettings(
                defer_post=config.defer_post,
                unsafe_early_post=self.unsafe_early_post,
                wait_for_background_migrations=config.wait_for_background_migrations,
                background_migrations_timeout=config.background_migrations_timeout,
                background_migrations_interval=config.background_migrations_interval,
            ),
        )

    def _info(self, upgrade_id: str, from_version: Version) -> UpgradeInfo:
        return UpgradeInfo(
            id=upgrade_id,
            target=self.config.target.name,
            from_version=str(from_version),
            to_version=str(self.config.release.version),
            strategy=self.config.strategy.name,
            layers=tuple(layer.name for layer in self.config.layers),
        )

    # -- running -----------------------------------------------------------------------------------

    def run(self, *, resume: str | None = None, actor: str | None = None) -> Report:
        """Run the upgrade to its end and return the report.

        While it runs, ``zdu pause ID``, ``zdu abort ID`` and ``zdu promote ID`` (or
        :func:`zdu.pause`, :func:`zdu.abort`, :func:`zdu.promote`) from another process steer it
        through the journal, and setting :attr:`cancel` (what Ctrl-C and SIGTERM do at the command
        line) stops it at its next safe point, paused. A target that already serves the release is
        left alone: the report says so (:attr:`~zdu.model.Report.nothing_to_do`) and nothing is
        recorded as an upgrade.

        :param resume: the id of an interrupted or paused upgrade of the same target to continue from
            the phase it was in (each phase is idempotent).
        :param actor: who resumes it, for the journal (default: ``user@host``).
        :raises UsageError: bad input found before anything changed (nothing is recorded as started).
        :raises TargetBusy: another upgrade of the target is in progress.
        """
        started = time.time()
        # built before anything is recorded: a bad option of a part is bad input, not a failed upgrade
        parts = (self._strategy(), self._layers(), self._runner())
        with self.platform.hold_lock(_holder()):
            if isinstance(self.platform, ReportsLockLoss):
                self.platform.on_lock_lost(self._on_lock_lost)
            try:
                if resume is None and (done := self._nothing_to_do(started)) is not None:
                    return done
                with self._outputs():
                    return self._run(resume, started, parts, actor or default_actor())
            finally:
                with self._lock_guard:
                    self._running_id, self._lock_lost = None, None

    def _on_lock_lost(self, reason: str) -> None:
        """The target's lock was lost (from the platform's thread): pause at the next safe point."""
        log.warning("the target's upgrade lock was lost: %s; pausing at the next safe point", reason)
        with self._lock_guard:
            self._lock_lost = reason
            upgrade_id = self._running_id
        if upgrade_id is not None:
            self._request_pause(upgrade_id, reason)

    def _started(self, upgrade_id: str) -> None:
        """The upgrade ``upgrade_id`` runs now: a lock lost before is acted on at its first safe point."""
        with self._lock_guard:
            self._running_id = upgrade_id
            lost = self._lock_lost
        if lost is not None:
            self._request_pause(upgrade_id, lost)

    def _request_pause(self, upgrade_id: str, reason: str) -> None:
        """Journal a pause request, as ``zdu pause ID`` does: the upgrade stops at its next safe point."""
        by = f"zdu, the target's lock being lost ({reason})"
        record = self.journal.get(upgrade_id)
        self.journal.record(
            upgrade_id,
            (record.phase if record else "") or "",
            PAUSE_EVENT,
            f"pause requested by {by}",
            {"by": by},
        )

    def _nothing_to_do(self, started: float) -> Report | None:
        """The report of an upgrade that has nothing to do: the target already serves the release."""
        self.journal.check_free(self.config.target.name)
        release = self.config.release.version
        if current_version(self.platform) != release:
            return None
        return Report(
            upgrade_id="",
            target=self.config.target.name,
            from_version=str(release),
            to_version=str(release),
            strategy=self.config.strategy.name,
            layers=tuple(layer.name for layer in self.config.layers),
            status=UpgradeStatus.SUCCEEDED,
            started_at=started,
            finished_at=time.time(),
            nothing_to_do=True,
        )

    def _run(
        self,
        resume: str | None,
        started: float,
        parts: tuple[Strategy, list[TrafficLayer], MigrationRunner | None],
        actor: str,
    ) -> Report:
        if resume is None:
            self.journal.check_free(self.config.target.name)
            from_version = self._from_version()
            self._check_versions(from_version, parts[2])
            upgrade_id = self.journal.begin(
                target=self.config.target.name,
                from_version=str(from_version),
                to_version=str(self.config.release.version),
                strategy=self.config.strategy.name,
                layers=tuple(layer.name for layer in self.config.layers),
                config={**self.config.redacted(), "source": str(self.config.source or "")},
            )
            done: set[str] = set()
        else:
            upgrade_id, from_version = resume, self._claim(resume)
            done = {
                e.data.get("phase", "") for e in self.journal.events(resume) if e.kind == "phase-finished"
            }
        recorder = Recorder(
            self.journal, self.manager, self._info(upgrade_id, from_version), "upgrade", started
        )
        recorder.started_upgrade()
        self._started(upgrade_id)
        gates: list[ProbeGate] = []
        replicas = self._replicas(from_version, resume)
        ctx = self._context(recorder, from_version, gates, replicas)
        if resume is None:
            ctx.event("replicas", f"the fleet has {replicas} instances", replicas=replicas)
        else:
            ctx.event("resumed", f"resumed by {actor}", by=actor)
        # whatever escapes the loop (it catches every Exception) stops the upgrade where it stands:
        # never recorded as succeeded, always resumable
        status: UpgradeStatus = UpgradeStatus.INTERRUPTED
        error: str | None = (
            f"stopped at once; resume with 'zdu resume {upgrade_id}' or roll back with "
            f"'zdu rollback {upgrade_id}'"
        )
        try:
            status, error = self._run_phases(recorder, self._work(ctx, *parts, gates), done)
        finally:
            report = recorder.finish(status, error, stop_probes(gates))
        return report

    def _claim(self, upgrade_id: str) -> Version:
        """Take over a paused or interrupted upgrade of this target; the version it started from."""
        record = self.journal.get(upgrade_id)
        if record is None or record.target != self.config.target.name:
            raise UsageError(
                f"no upgrade {upgrade_id!r} of target {self.config.target.name!r} in the journal"
            )
        if not record.status.in_progress:
            raise UsageError(
                f"upgrade {upgrade_id} is {record.status.value}; only a paused or interrupted one resumes"
            )
        self.journal.claim(upgrade_id)
        return Version.parse(record.from_version)

    def _run_phases(
        self, recorder: Recorder, work: PhaseWork, done: set[str]
    ) -> tuple[UpgradeStatus, str | None]:
        """The loop: every phase of the table in order, each gated at its end; a failure rolls back."""
        spec = PHASES[0]  # the phase in progress, or the last one run (between two phases)
        upgrade_id = work.ctx.info.id
        resumable = f"resume with 'zdu resume {upgrade_id}' or roll back with 'zdu rollback {upgrade_id}'"
        try:
            for following in PHASES:
                if str(following.phase) in done and not following.reruns_on_resume:
                    continue
                # a safe point between two phases: a signal, a pause or an abort is acted on here
                work.ctx.check_cancelled()
                work.ctx.check_controls(f"start of {following.phase}")
                spec = following
                with recorder.phase(work.ctx, spec.phase):
                    spec.run(work)
                    spec.gate_at_end(work.ctx)
        except UpgradePaused as paused:
            return UpgradeStatus.PAUSED, str(paused)
        except UpgradeInterrupted as interrupted:
            if not self.cancel.is_set():
                return self._failed(recorder, work, spec.phase, str(interrupted))
            # Ctrl-C or SIGTERM: stopped at a safe point, paused, nothing undone
            work.ctx.event("paused", f"stopped by a signal in {spec.phase}: paused")
            return UpgradeStatus.PAUSED, f"stopped by Ctrl-C or SIGTERM in {spec.phase}; {resumable}"
        except KeyboardInterrupt:
            # a second Ctrl-C or SIGTERM: stopped at once, mid-step; every step is idempotent
            work.ctx.event("interrupted", f"stopped at once in {spec.phase}")
            return UpgradeStatus.INTERRUPTED, f"stopped at once in {spec.phase}; {resumable}"
        except Exception as failure:
            if not isinstance(failure, ZduError | OSError):
                # a bug (ours or a plugin's): the upgrade fails as honestly as after any other error
                log.error("%s: unexpected error", spec.phase, exc_info=failure)
                message = f"unexpected {type(failure).__name__}: {failure}"
            else:
                message = str(failure)
            if isinstance(failure, UsageError) and spec.changes_nothing:
                return UpgradeStatus.FAILED, message
            reason = message if isinstance(failure, UpgradeAborted) else None
            return self._failed(recorder, work, spec.phase, message, reason)
        return UpgradeStatus.SUCCEEDED, None

    def _failed(
        self, recorder: Recorder, work: PhaseWork, phase: Phase, message: str, reason: str | None = None
    ) -> tuple[UpgradeStatus, str | None]:
        """A phase failed: roll back before the point of no return, else leave it failed."""
        if not PHASES.rollback_possible(phase):
            work.ctx.event("error", f"{phase} failed after the point of no return: {message}")
            return UpgradeStatus.FAILED, (
                f"{phase} failed: {message}; post-deployment migrations have started, so there is "
                "no rollback: fix forward (a patch release) or restore a backup"
            )
        return self._rollback(recorder, work, reason or f"{phase} failed: {message}")

    def _verify(self, ctx: UpgradeContext) -> None:
        stale = [str(v) for v in self.platform.serving_versions() if v != ctx.release.version]
        if stale:
            raise GateFailed(f"after the rollout, other versions still take traffic: {', '.join(stale)}")
        ctx.wait(self.verify_seconds, "verify")

    def _check_no_older_instance(self, ctx: UpgradeContext) -> None:
        older = [str(v) for v in running_versions(self.platform) if v < ctx.release.version]
        if older:
            raise GateFailed(
                f"post-deployment migrations need every instance on {ctx.release.version}; still running: "
                f"{', '.join(older)}"
            )

    def _rollback(self, recorder: Recorder, work: PhaseWork, reason: str) -> tuple[UpgradeStatus, str]:
        """Undo what the phases before the point of no return did (:meth:`PhaseTable.roll_back`)."""
        work.ctx.event("rollback", f"rolling back: {reason}")
        try:
            with recorder.phase(work.ctx, Phase.ROLLBACK):
                PHASES.roll_back(work)
        except (Exception, KeyboardInterrupt) as failure:
            if not isinstance(failure, ZduError | OSError | KeyboardInterrupt):
                log.error("rollback: unexpected error", exc_info=failure)
            return UpgradeStatus.INTERRUPTED, (
                f"{reason}; rollback failed too: {failure}; the upgrade is left resumable "
                f"('zdu rollback {work.ctx.info.id}' tries again)"
            )
        return UpgradeStatus.ROLLED_BACK, reason

    @contextlib.contextmanager
    def _outputs(self) -> Iterator[None]:
        """Serve metrics, push them at the end, and notify webhooks, as the configuration asks."""

        def served_at(url: str) -> None:
            self.metrics_url = url

        with serving_outputs(self.config, self.manager, served_at):
            yield

    # -- rollback and post-deployment migrations on their own ---------------------------------------

    def rollback(self, upgrade_id: str) -> Report:
        """Roll back a paused or interrupted upgrade (``zdu rollback ID``).

        :raises RollbackRefused: once ``migrate(post)`` has started for it.
        """
        with self._outputs():
            return self._rollback_requested(upgrade_id)

    def _rollback_requested(self, upgrade_id: str) -> Report:
        record = self.journal.get(upgrade_id)
        if record is None or record.target != self.config.target.name:
            raise UsageError(
                f"no upgrade {upgrade_id!r} of target {self.config.target.name!r} in the journal"
            )
        events = self.journal.events(upgrade_id)
        started = [e.data.get("phase", "") for e in events if e.kind == "phase-started"]
        if PHASES.past_the_point_of_no_return(started) is not None:
            raise RollbackRefused(
                f"upgrade {upgrade_id} has started post-deployment migrations, the point of no return: "
                "roll forward with a fix, or restore a backup"
            )
        if not record.status.in_progress:
            raise UsageError(f"upgrade {upgrade_id} is {record.status.value}; nothing to roll back")
        with self.platform.hold_lock(_holder()):
            self.journal.claim(upgrade_id)
            from_version = Version.parse(record.from_version)
            info = self._info(upgrade_id, from_version)
            recorder = Recorder(self.journal, self.manager, info, "manual rollback", time.time())
            ctx = self._context(recorder, from_version, [], self._replicas(from_version, upgrade_id))
            work = self._work(ctx, self._strategy(), self._layers(), None, [])
            status, outcome = self._rollback(recorder, work, "rollback requested")
        error = None if status is UpgradeStatus.ROLLED_BACK else outcome
        return recorder.finish(status, error)

    def migrate_post(self) -> Report:
        """Run the post-deployment migrations on their own (``zdu migrate post CONFIG``).

        For upgrades run with ``migrations.defer_post``. Runs the table's ``migrate(post)`` phase, with
        its precondition: the platform serves the release and runs no instance of an older version.
        Holds the target's lock (the platform's and the journal's) while it runs.
        """
        runner = self._runner()
        if runner is None:
            raise UsageError("migrations: no migration runner configured, so there is nothing to run")
        release = self.config.release.version
        running = current_version(self.platform)
        if running != release:
            raise PreflightError(
                f"post-deployment migrations of {release} need the whole fleet on {release}; "
                f"{self.config.target.name!r} serves {running or 'no single version'}"
            )
        with self.platform.hold_lock(_holder()):
            return self._migrate_post_locked(runner, release)

    def _migrate_post_locked(self, runner: MigrationRunner, release: Version) -> Report:
        started = time.time()
        upgrade_id = self.journal.begin(
            target=self.config.target.name,
            from_version=str(release),
            to_version=str(release),
            strategy="migrate-post",
            config={**self.config.redacted(), "source": str(self.config.source or "")},
        )
        info = UpgradeInfo(upgrade_id, self.config.target.name, str(release), str(release), "migrate-post")
        recorder = Recorder(self.journal, self.manager, info, "upgrade", started)
        recorder.started_upgrade()
        ctx = self._context(recorder, release, [], self._replicas(release))
        work = self._work(ctx, self._strategy(), [], runner, [])
        # the deferred migrations are the point of this command: run them now
        work = attrs.evolve(work, settings=attrs.evolve(work.settings, defer_post=False))
        spec = PHASES.spec(Phase.MIGRATE_POST)
        status, error = UpgradeStatus.SUCCEEDED, None
        try:
            with recorder.phase(ctx, spec.phase):
                spec.run(work)
        except Exception as failure:
            if not isinstance(failure, ZduError | OSError):
                log.error("%s: unexpected error", spec.phase, exc_info=failure)
            status, error = UpgradeStatus.FAILED, f"{spec.phase} failed: {failure}"
        return recorder.finish(status, error)

    def close(self) -> None:
        """Release the platform's client resources (the fleet keeps running)."""
        if self._platform is not None:
            self._platform.close()


def default_actor() -> str:
    """Who acts, for the journal: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _holder() -> str:
    """Who holds a target's lock: this process, on this machine."""
    return f"zdu pid {os.getpid()} on {socket.gethostname()}"
