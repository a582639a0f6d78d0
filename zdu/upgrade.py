"""The orchestrator: runs an upgrade's phases in order, gates each, and rolls back while it can.

The control flow is a plain loop over :data:`zdu.model.Phase.ORDER`::

    preflight → migrate(pre) → prepare → rollout → verify → finalize → migrate(post) → cleanup

Probes start in ``preflight`` and run until the upgrade ends; every phase ends with a gate, and
strategies gate after each of their steps. A failure before ``migrate(post)`` rolls back (the strategy
puts the old version back, then the layers switch off); from ``migrate(post)`` on there is no way back
and the upgrade is left failed, for a person to roll forward. The journal records every phase and step
before and after it happens, so an interrupted upgrade can be resumed (``Upgrade.run(resume=ID)``)
from the phase it was in: each phase is idempotent.
"""

from __future__ import annotations

import contextlib
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
from zdu.context import ProbeGate, UpgradeContext, UpgradeInfo, UpgradePaused
from zdu.errors import (
    GateFailed,
    PreflightError,
    RollbackRefused,
    UsageError,
    ZduError,
)
from zdu.journal import Journal
from zdu.metrics import UpgradeMetrics
from zdu.migrations import (
    MigrationEnv,
    MigrationRunner,
    Stage,
    check_background_migrations,
    wait_for_background_migrations,
)
from zdu.model import Phase, Report, UpgradeStatus, Verdict, Version
from zdu.notify import WebhookNotifier, notification_of
from zdu.platform import (
    Platform,
    PlatformEnv,
    RecordsChanges,
    RoutedGroups,
    remove_managed_routes,
    running_versions,
)
from zdu.policy import check_upgrade_path
from zdu.probe import GateSettings, Probe, ProbeContext
from zdu.registry import ZduPluginManager, get_plugin_manager
from zdu.strategy import Step, Strategy, TrafficLayer

__all__ = ["Plan", "Upgrade", "current_version"]

log = logging.getLogger("zdu.upgrade")


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
        self._trigger = "upgrade"
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
        self, info: UpgradeInfo, from_version: Version, gates: list[ProbeGate], replicas: int = 1
    ) -> UpgradeContext:
        def record(kind: str, message: str, data: dict[str, Any]) -> None:
            event = self.journal.record(info.id, context.phase, kind, message, data)
            self.manager.notify("zdu_event", upgrade=info, event=event)

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
        from_version = self._from_version()
        runner = self._runner()
        self._check_versions(from_version, runner)
        info = self._info("plan", from_version)
        context = self._context(info, from_version, [], self._replicas(from_version))
        context.dry_run = True
        steps: list[Step] = [Step("preflight", "check", "versions, platform health, probes start")]
        if runner is not None:
            steps.extend(Step("migrate(pre)", "migrate", name) for name in runner.pending(Stage.PRE))
        layers = self._layers()
        for layer in layers:
            steps.extend(step for step in layer.plan(context) if step.phase == "prepare")
        steps.extend(self._strategy().plan(context))
        for layer in layers:
            steps.extend(step for step in layer.plan(context) if step.phase != "prepare")
        steps.append(Step("verify", "verify", f"only {self.config.release.version} serves; probes gate"))
        if runner is not None:
            action = "deferred" if self.config.defer_post else "migrate"
            steps.extend(Step("migrate(post)", action, name) for name in runner.pending(Stage.POST))
        steps.append(Step("cleanup", "cleanup", "remove managed routes, stop probes"))
        changes: list[dict[str, Any]] = []
        if offline is not None:
            changes = self._dry_run(context, layers)
        return Plan(
            target=self.config.target.name,
            from_version=str(from_version),
            to_version=str(self.config.release.version),
            strategy=self.config.strategy.name,
            layers=tuple(layer.name for layer in self.config.layers),
            steps=tuple(sorted(steps, key=lambda s: _phase_rank(s.phase))),
            changes=tuple(changes),
        )

    def _dry_run(self, context: UpgradeContext, layers: list[TrafficLayer]) -> list[dict[str, Any]]:
        """Run prepare, rollout, finalize and cleanup on the offline platform; return what it recorded."""
        platform = self.platform
        assert isinstance(platform, RecordsChanges)
        ctx = attrs.evolve(context, record_event=lambda *_: None, probe_factories=(), gates=())
        strategy = self._strategy()
        for layer in layers:
            layer.prepare(ctx)
        strategy.rollout(ctx)
        strategy.finalize(ctx)
        for layer in reversed(layers):
            layer.finalize(ctx)
        remove_managed_routes(self.platform)
        return platform.recorded_changes()

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

    def run(self, *, resume: str | None = None) -> Report:
        """Run the upgrade to its end and return the report.

        :param resume: the id of an interrupted or paused upgrade of the same target to continue from
            the phase it was in (each phase is idempotent).
        :raises UsageError: bad input found before anything changed (nothing is recorded as started).
        :raises TargetBusy: another upgrade of the target is in progress.
        """
        started = time.time()
        # built before anything is recorded: a bad option of a part is bad input, not a failed upgrade
        parts = (self._strategy(), self._layers(), self._runner())
        with self.platform.hold_lock(_holder()), self._outputs():
            return self._run(resume, started, parts)

    def _run(
        self,
        resume: str | None,
        started: float,
        parts: tuple[Strategy, list[TrafficLayer], MigrationRunner | None],
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
            record = self.journal.get(resume)
            if record is None or record.target != self.config.target.name:
                raise UsageError(
                    f"no upgrade {resume!r} of target {self.config.target.name!r} in the journal"
                )
            if not record.status.in_progress:
                raise UsageError(
                    f"upgrade {resume} is {record.status.value}; only a paused or interrupted one resumes"
                )
            self.journal.claim(resume)
            upgrade_id, from_version = resume, Version.parse(record.from_version)
            done = {
                e.data.get("phase", "") for e in self.journal.events(resume) if e.kind == "phase-finished"
            }
        info = self._info(upgrade_id, from_version)
        self.manager.notify("zdu_upgrade_started", upgrade=info)
        gates: list[ProbeGate] = []
        replicas = self._replicas(from_version, resume)
        ctx = self._context(info, from_version, gates, replicas)
        if resume is None:
            ctx.event("replicas", f"the fleet has {replicas} instances", replicas=replicas)
        phases: list[tuple[str, float]] = []
        status, error = UpgradeStatus.SUCCEEDED, None
        try:
            status, error = self._run_phases(ctx, gates, phases, done, *parts)
        finally:
            verdicts = self._stop_probes(gates)
            report = self._finish(info, status, started, phases, error, verdicts)
        return report

    def _run_phases(
        self,
        ctx: UpgradeContext,
        gates: list[ProbeGate],
        phases: list[tuple[str, float]],
        done: set[str],
        strategy: Strategy,
        layers: list[TrafficLayer],
        runner: MigrationRunner | None,
    ) -> tuple[UpgradeStatus, str | None]:
        actions: dict[Phase, Callable[[], None]] = {
            Phase.PREFLIGHT: lambda: self._preflight(ctx, gates, strategy, layers),
            Phase.MIGRATE_PRE: lambda: self._migrate_pre(ctx, runner),
            Phase.PREPARE: lambda: self._prepare(ctx, layers),
            Phase.ROLLOUT: lambda: strategy.rollout(ctx),
            Phase.VERIFY: lambda: self._verify(ctx),
            Phase.FINALIZE: lambda: self._finalize(ctx, strategy, layers),
            Phase.MIGRATE_POST: lambda: self._migrate_post(ctx, runner),
            Phase.CLEANUP: lambda: remove_managed_routes(self.platform),
        }
        phase = Phase.PREFLIGHT
        try:
            for phase in Phase.ORDER:
                if str(phase) in done and phase is not Phase.PREFLIGHT:
                    continue
                with self._phase(ctx, phase, phases):
                    actions[phase]()
                    if phase is not Phase.CLEANUP:
                        ctx.gate(f"end of {phase}", force=phase is Phase.FINALIZE)
        except UpgradePaused as paused:
            return UpgradeStatus.PAUSED, str(paused)
        except (ZduError, KeyboardInterrupt, OSError) as failure:
            message = "interrupted" if isinstance(failure, KeyboardInterrupt) else str(failure)
            if isinstance(failure, UsageError) and phase is Phase.PREFLIGHT:
                return UpgradeStatus.FAILED, message
            if not phase.rollback_possible:
                ctx.event("error", f"{phase} failed after the point of no return: {message}")
                return UpgradeStatus.FAILED, (
                    f"{phase} failed: {message}; post-deployment migrations have started, so there is no "
                    "rollback: fix forward (a patch release) or restore a backup"
                )
            return self._rollback(ctx, strategy, layers, phases, f"{phase} failed: {message}")
        return UpgradeStatus.SUCCEEDED, None

    @contextlib.contextmanager
    def _phase(self, ctx: UpgradeContext, phase: Phase, phases: list[tuple[str, float]]) -> Iterator[None]:
        name = str(phase)
        ctx.phase = name
        self.journal.set_phase(ctx.info.id, name)
        ctx.event("phase-started", f"{name} started", phase=name)
        self.manager.notify("zdu_phase_started", upgrade=ctx.info, phase=name)
        begun = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "succeeded"
        finally:
            duration = time.monotonic() - begun
            phases.append((name, duration))
            ctx.event(
                f"phase-{'finished' if outcome == 'succeeded' else 'failed'}", f"{name} {outcome}", phase=name
            )
            self.manager.notify(
                "zdu_phase_finished", upgrade=ctx.info, phase=name, outcome=outcome, duration_s=duration
            )

    def _preflight(
        self, ctx: UpgradeContext, gates: list[ProbeGate], strategy: Strategy, layers: list[TrafficLayer]
    ) -> None:
        problems = self.platform.check_health()
        if problems:
            raise PreflightError(f"the platform is unhealthy before the upgrade: {'; '.join(problems)}")
        for step in strategy.plan(ctx):
            ctx.event("plan", f"{step.phase}: {step.action} {step.detail}".strip())
        for layer in layers:
            for step in layer.plan(ctx):
                ctx.event("plan", f"{step.phase}: {step.action} {step.detail}".strip())
        probe_context = ProbeContext(
            url=self.platform.url,
            target=ctx.target,
            release=ctx.release,
            from_version=ctx.from_version,
        )
        for factory, settings in ctx.probe_factories:
            probe = factory()
            probe.start(probe_context)
            gates.append(ProbeGate(probe=probe, settings=settings))
            ctx.event("probe-started", f"probe {probe.name} started against {probe_context.url}")

    def _migrate(self, ctx: UpgradeContext, runner: MigrationRunner | None, stage: Stage) -> None:
        if runner is None:
            ctx.event("migrations", f"no migration runner configured; {stage} stage skipped")
            return
        pending = runner.pending(stage)
        ctx.event("migrations-pending", f"{len(pending)} {stage} migrations pending", pending=pending)
        applied = runner.run(stage, ctx)
        ctx.event("migrations-applied", f"{len(applied)} {stage} migrations applied", applied=applied)

    def _migrate_pre(self, ctx: UpgradeContext, runner: MigrationRunner | None) -> None:
        self._migrate(ctx, runner, Stage.PRE)
        if self.unsafe_early_post:
            ctx.event("unsafe", "UNSAFE: running post-deployment migrations before the rollout, as asked")
            self._migrate(ctx, runner, Stage.POST)

    def _prepare(self, ctx: UpgradeContext, layers: list[TrafficLayer]) -> None:
        for layer in layers:
            layer.prepare(ctx)

    def _verify(self, ctx: UpgradeContext) -> None:
        stale = [str(v) for v in self.platform.serving_versions() if v != ctx.release.version]
        if stale:
            raise GateFailed(f"after the rollout, other versions still take traffic: {', '.join(stale)}")
        ctx.wait(self.verify_seconds, "verify")

    def _finalize(self, ctx: UpgradeContext, strategy: Strategy, layers: list[TrafficLayer]) -> None:
        strategy.finalize(ctx)
        for layer in reversed(layers):
            layer.finalize(ctx)

    def _migrate_post(self, ctx: UpgradeContext, runner: MigrationRunner | None) -> None:
        if runner is not None and self.config.defer_post:
            ctx.event(
                "migrations",
                f"post-deployment migrations deferred ({len(runner.pending(Stage.POST))} pending): "
                "run 'zdu migrate post CONFIG' once you are ready",
            )
        else:
            self._check_no_older_instance(ctx)
            self._migrate(ctx, runner, Stage.POST)
        self._wait_for_background_migrations(ctx, runner)

    def _wait_for_background_migrations(self, ctx: UpgradeContext, runner: MigrationRunner | None) -> None:
        if runner is not None and self.config.wait_for_background_migrations:
            wait_for_background_migrations(
                runner,
                ctx,
                timeout=self.config.background_migrations_timeout,
                interval=self.config.background_migrations_interval,
            )

    def _check_no_older_instance(self, ctx: UpgradeContext) -> None:
        older = [str(v) for v in running_versions(self.platform) if v < ctx.release.version]
        if older:
            raise GateFailed(
                f"post-deployment migrations need every instance on {ctx.release.version}; still running: "
                f"{', '.join(older)}"
            )

    def _rollback(
        self,
        ctx: UpgradeContext,
        strategy: Strategy,
        layers: list[TrafficLayer],
        phases: list[tuple[str, float]],
        reason: str,
    ) -> tuple[UpgradeStatus, str]:
        ctx.event("rollback", f"rolling back: {reason}")
        try:
            with self._phase(ctx, Phase.ROLLBACK, phases):
                strategy.rollback(ctx)
                for layer in reversed(layers):
                    layer.rollback(ctx)
                remove_managed_routes(self.platform)
        except (ZduError, KeyboardInterrupt, OSError) as failure:
            return UpgradeStatus.INTERRUPTED, (
                f"{reason}; rollback failed too: {failure}; the upgrade is left resumable "
                f"('zdu rollback {ctx.info.id}' tries again)"
            )
        return UpgradeStatus.ROLLED_BACK, reason

    def _finish(
        self,
        info: UpgradeInfo,
        status: UpgradeStatus,
        started: float,
        phases: list[tuple[str, float]],
        error: str | None,
        verdicts: list[Verdict] | None = None,
    ) -> Report:
        """Build the report, record the end in the journal, and tell the observers."""
        report = Report(
            upgrade_id=info.id,
            target=info.target,
            from_version=info.from_version,
            to_version=info.to_version,
            strategy=info.strategy,
            layers=info.layers,
            status=status,
            started_at=started,
            finished_at=time.time(),
            phases=tuple(phases),
            verdicts=tuple(verdicts or ()),
            error=error,
        )
        self.journal.finish(info.id, status, report=report.to_dict(), error=error)
        self.manager.notify("zdu_upgrade_finished", upgrade=info, report=report)
        self.manager.notify("zdu_notify", notification=notification_of(info, report, self._trigger))
        return report

    # -- metrics and notifications -----------------------------------------------------------------

    @contextlib.contextmanager
    def _outputs(self, trigger: str = "upgrade") -> Iterator[None]:
        """Serve metrics, push them at the end, and notify webhooks, as the configuration asks."""
        self._trigger = trigger
        config = self.config
        metrics = UpgradeMetrics() if config.metrics_address or config.pushgateway else None
        notifier = WebhookNotifier(config.webhooks) if config.webhooks else None
        for observer, name in ((metrics, "zdu-metrics"), (notifier, "zdu-webhooks")):
            if observer is not None and not self.manager.has_plugin(name):
                self.manager.register(observer, name=name)
        try:
            if metrics is not None and config.metrics_address:
                try:
                    url = metrics.serve(config.metrics_address)
                except OSError as error:
                    raise UsageError(
                        f"upgrade.metrics_address: cannot serve on {config.metrics_address!r}: {error}"
                    ) from None
                log.info("metrics of upgrade of %s at %s", config.target.name, url)
                self.metrics_url = url
            yield
        finally:
            for observer in (metrics, notifier):
                if observer is not None and self.manager.is_registered(observer):
                    self.manager.unregister(observer)
            if metrics is not None:
                metrics.close()
                if config.pushgateway:
                    try:
                        metrics.push(config.pushgateway, config.target.name)
                    except OSError as error:
                        log.warning("could not push the metrics to the Pushgateway: %s", error)

    def _stop_probes(self, gates: list[ProbeGate]) -> list[Verdict]:
        verdicts = []
        for gate in gates:
            try:
                verdict = gate.probe.stop()
            except Exception as error:
                log.exception("probe %s failed to stop", gate.probe.name)
                raise ZduError(f"probe {gate.probe.name} failed to stop: {error}") from error
            verdicts.append(attrs.evolve(verdict, dry_run=gate.settings.dry_run))
        return verdicts

    def rollback(self, upgrade_id: str) -> Report:
        """Roll back a paused or interrupted upgrade (``zdu rollback ID``).

        :raises RollbackRefused: once ``migrate(post)`` has started for it.
        """
        with self._outputs(trigger="manual rollback"):
            return self._rollback_requested(upgrade_id)

    def _rollback_requested(self, upgrade_id: str) -> Report:
        record = self.journal.get(upgrade_id)
        if record is None or record.target != self.config.target.name:
            raise UsageError(
                f"no upgrade {upgrade_id!r} of target {self.config.target.name!r} in the journal"
            )
        events = self.journal.events(upgrade_id)
        if any(e.kind == "phase-started" and e.data.get("phase") == str(Phase.MIGRATE_POST) for e in events):
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
            ctx = self._context(info, from_version, [], self._replicas(from_version, upgrade_id))
            phases: list[tuple[str, float]] = []
            started = time.time()
            status, outcome = self._rollback(
                ctx, self._strategy(), self._layers(), phases, "rollback requested"
            )
        error = None if status is UpgradeStatus.ROLLED_BACK else outcome
        report = self._finish(info, status, started, phases, error)
        return report

    def migrate_post(self) -> Report:
        """Run the post-deployment migrations on their own (``zdu migrate post CONFIG``).

        For upgrades run with ``migrations.defer_post``. Checks the same precondition as the upgrade's
        ``migrate(post)`` phase: the platform serves the release and runs no instance of an older
        version. Holds the target's lock (the platform's and the journal's) while it runs.
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
        self.manager.notify("zdu_upgrade_started", upgrade=info)
        ctx = self._context(info, release, [], self._replicas(release))
        phases: list[tuple[str, float]] = []
        status, error = UpgradeStatus.SUCCEEDED, None
        try:
            with self._phase(ctx, Phase.MIGRATE_POST, phases):
                self._check_no_older_instance(ctx)
                self._migrate(ctx, runner, Stage.POST)
                self._wait_for_background_migrations(ctx, runner)
        except (ZduError, OSError) as failure:
            status, error = UpgradeStatus.FAILED, f"{Phase.MIGRATE_POST} failed: {failure}"
        return self._finish(info, status, started, phases, error)

    def close(self) -> None:
        """Release the platform's client resources (the fleet keeps running)."""
        if self._platform is not None:
            self._platform.close()


def _holder() -> str:
    """Who holds a target's lock: this process, on this machine."""
    return f"zdu pid {os.getpid()} on {socket.gethostname()}"


def _phase_rank(phase: str) -> int:
    names = [str(p) for p in Phase.ORDER]
    return names.index(phase) if phase in names else len(names)
