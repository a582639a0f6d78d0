"""The hook specifications: what a zdu plugin can implement.

Two kinds of hooks:

* **registration** hooks (plural nouns) return records that name an implementation: a strategy, a
  traffic layer, a probe, a platform, a migration runner. zdu collects every record and picks one by
  the name the configuration gives.
* **lifecycle** hooks (``zdu_upgrade_*``, ``zdu_phase_*``, ``zdu_event``) tell observers (metrics
  exporters, notifications, release tooling) what an upgrade is doing. They are called through pluggy,
  so ``tryfirst``, ``trylast`` and wrappers (``wrapper=True``) work as pluggy documents. Observers
  cannot change the upgrade's course; an exception one raises is logged with its plugin's name and the
  others still run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click
import pluggy

from zdu.records import PROJECT_NAME

if TYPE_CHECKING:
    from zdu.context import UpgradeInfo
    from zdu.model import Event, Report
    from zdu.notify import Notification
    from zdu.records import (
        MigrationRunnerPlugin,
        PlatformPlugin,
        ProbePlugin,
        StrategyPlugin,
        TrafficLayerPlugin,
    )

_hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@_hookspec
def zdu_strategies() -> Iterable[StrategyPlugin[object]]:  # type: ignore[empty-body]
    """Register rollout strategies.

    Return (or yield) one :class:`~zdu.plugins.StrategyPlugin` per strategy. Returning ``None`` or an
    empty iterable registers nothing.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import StrategyPlugin, hookimpl

        @hookimpl
        def zdu_strategies():
            yield StrategyPlugin(
                name="shadow",
                summary="mirror requests to the new version before switching",
                config=ShadowConfig,
                factory=Shadow,
            )
    """


@_hookspec
def zdu_traffic_layers() -> Iterable[TrafficLayerPlugin[object]]:  # type: ignore[empty-body]
    """Register traffic layers, which combine with any rollout strategy (``strategy.layers``).

    Return (or yield) one :class:`~zdu.plugins.TrafficLayerPlugin` per layer. Returning ``None`` or an
    empty iterable registers nothing.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import TrafficLayerPlugin, hookimpl

        @hookimpl
        def zdu_traffic_layers():
            yield TrafficLayerPlugin(
                name="header-pin",
                summary="pin clients to a version by a request header",
                factory=lambda config: HeaderPin(),
            )
    """


@_hookspec
def zdu_probes() -> Iterable[ProbePlugin[object]]:  # type: ignore[empty-body]
    """Register probes, which watch an upgrade and gate its phases.

    Return (or yield) one :class:`~zdu.plugins.ProbePlugin` per probe. Returning ``None`` or an empty
    iterable registers nothing.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import ProbePlugin, hookimpl

        @hookimpl
        def zdu_probes():
            yield ProbePlugin(
                name="error-budget",
                summary="fail when the error budget burns too fast",
                config=BudgetConfig,
                factory=BudgetProbe,
            )
    """


@_hookspec
def zdu_platforms() -> Iterable[PlatformPlugin[object]]:  # type: ignore[empty-body]
    """Register platforms: each provides the base Platform and declares the capabilities it adds.

    Return (or yield) one :class:`~zdu.plugins.PlatformPlugin` per platform. Returning ``None`` or an
    empty iterable registers nothing.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import PlatformPlugin, hookimpl

        @hookimpl
        def zdu_platforms():
            yield PlatformPlugin(
                name="nomad",
                summary="Nomad jobs behind Consul-routed traefik",
                config=NomadConfig,
                factory=lambda config, env: NomadPlatform(config, env.target),
                provides={"instance-groups", "preview-route"},
            )
    """


@_hookspec
def zdu_migration_runners() -> Iterable[MigrationRunnerPlugin[object]]:  # type: ignore[empty-body]
    """Register migration runners, which apply schema migrations in the ``pre`` and ``post`` stages.

    Return (or yield) one :class:`~zdu.plugins.MigrationRunnerPlugin` per runner. Returning ``None`` or
    an empty iterable registers nothing.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import MigrationRunnerPlugin, hookimpl

        @hookimpl
        def zdu_migration_runners():
            yield MigrationRunnerPlugin(
                name="flyway",
                summary="Flyway migrations, post-deployment ones in a second location",
                config=FlywayConfig,
                factory=lambda config, env: Flyway(config),
            )
    """


@_hookspec
def zdu_upgrade_started(upgrade: UpgradeInfo) -> None:
    """Called once an upgrade is recorded in the journal, before ``preflight``.

    :param upgrade: the upgrade's id, target, versions, strategy and layers.

    The return value is ignored.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_upgrade_started(upgrade):
            print(f"upgrading {upgrade.target} to {upgrade.to_version}")
    """


@_hookspec
def zdu_phase_started(upgrade: UpgradeInfo, phase: str) -> None:
    """Called when a phase starts (``preflight`` ... ``cleanup``, and ``rollback``).

    :param upgrade: the upgrade's id, target, versions, strategy and layers.
    :param phase: the phase's name, as in :class:`zdu.model.Phase` (``"migrate(pre)"``).

    The return value is ignored.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_phase_started(upgrade, phase):
            print(f"{upgrade.id}: {phase} started")
    """


@_hookspec
def zdu_phase_finished(upgrade: UpgradeInfo, phase: str, outcome: str, duration_s: float) -> None:
    """Called when a phase ends, whether it succeeded or not.

    :param upgrade: the upgrade's id, target, versions, strategy and layers.
    :param phase: the phase's name.
    :param outcome: ``"succeeded"`` or ``"failed"``.
    :param duration_s: how long the phase took, in seconds.

    The return value is ignored.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_phase_finished(upgrade, phase, outcome, duration_s):
            PHASE_SECONDS.labels(phase=phase, outcome=outcome).observe(duration_s)
    """


@_hookspec
def zdu_event(upgrade: UpgradeInfo, event: Event) -> None:
    """Called for every event the journal records (steps, gate results, errors).

    :param upgrade: the upgrade's id, target, versions, strategy and layers.
    :param event: the recorded event (secrets already redacted).

    The return value is ignored.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_event(upgrade, event):
            if event.kind == "gate-failed":
                page_someone(event.message)
    """


@_hookspec
def zdu_upgrade_finished(upgrade: UpgradeInfo, report: Report) -> None:
    """Called once an upgrade has ended: succeeded, rolled back, failed or paused.

    :param upgrade: the upgrade's id, target, versions, strategy and layers.
    :param report: the final report with every probe's verdict.

    The return value is ignored.

    .. versionadded:: 0.1

    Example::

        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_upgrade_finished(upgrade, report):
            DEPLOYMENT_SECONDS.labels(version=report.to_version).observe(report.duration_seconds)
    """


@_hookspec
def zdu_notify(notification: Notification) -> None:
    """Called once whenever an upgrade ends, to tell people.

    Every end counts: succeeded, rolled back (by a gate, an interruption or ``zdu rollback``),
    failed, or paused for a person.

    :param notification: target, versions, status, what ended it (``trigger``), the reason and the
        probes' main figures; ``notification.slack_payload()`` gives Slack-compatible JSON.

    The return value is ignored. zdu's own webhook notifier implements it (``upgrade.webhooks``).

    .. versionadded:: 0.2

    Example::

        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_notify(notification):
            send_mail("release@example.com", notification.title, notification.reason)
    """


@_hookspec
def zdu_commands(cli: click.Group) -> None:
    """Add commands to the ``zdu`` command line (``zdu local``, ``zdu demo`` come from plugins this way).

    :param cli: the top-level click group; call ``cli.add_command(...)``.

    The return value is ignored.

    .. versionadded:: 0.1

    Example::

        import click
        from zdu.plugins import hookimpl

        @hookimpl
        def zdu_commands(cli):
            @cli.command()
            def hello():
                click.echo("hello from my plugin")
    """
