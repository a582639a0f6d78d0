"""The ``zdu`` command: a thin layer over the library.

Results go to stdout (only JSON with ``--json``); progress goes to stderr. Exit codes:

* 0: done (the upgrade succeeded and every probe passed);
* 1: the upgrade failed, was rolled back, or an error stopped the command;
* 2: bad input (configuration, versions, names, arguments): nothing was changed;
* 3: the target has another upgrade in progress;
* 4: the upgrade paused for a person to decide (``zdu resume ID`` or ``zdu rollback ID``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import attrs
import click

from zdu import controls
from zdu.config import load_config
from zdu.console import (
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_PAUSED,
    LiveTraffic,
    ProgressObserver,
    WarningSummary,
    emit,
    interruptible,
    manager_from,
    report_exit_code,
    stderr_console,
)
from zdu.context import ABORT_EVENT
from zdu.errors import ConfigError, TargetBusy, UsageError, ZduError
from zdu.fleet_cli import fleet
from zdu.journal import Journal, UpgradeRecord, default_journal_path
from zdu.journals import candidate_journals
from zdu.metrics import parse_address
from zdu.migrations import migration_timings
from zdu.model import UpgradeStatus
from zdu.records import (
    MigrationRunnerPlugin,
    PlatformPlugin,
    StrategyPlugin,
    TrafficLayerPlugin,
)
from zdu.registry import get_plugin_manager
from zdu.report import load_view, render_html, render_text
from zdu.secret import install_redaction
from zdu.upgrade import Upgrade, default_actor

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BUSY",
    "EXIT_FAILED",
    "EXIT_PAUSED",
    "LiveTraffic",
    "ProgressObserver",
    "WarningSummary",
    "cli",
    "emit",
    "interruptible",
    "main",
    "manager_from",
    "report_exit_code",
    "stderr_console",
]


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v: info, -vv: debug).")
@click.version_option(package_name="zdu")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Zero-downtime upgrades of GitLab deployments, measured."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    install_redaction()  # every log line loses its secrets
    manager_from(ctx)


config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
json_option = click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")


@cli.command()
@config_argument
@json_option
@click.option(
    "--offline",
    "offline",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="STATE.json",
    help="Plan against this snapshot of the platform's objects and print every object it would send "
    "(with --json: only those, as a list).",
)
@click.pass_context
def plan(ctx: click.Context, config: Path, as_json: bool, offline: Path | None) -> None:
    """Print what an upgrade would do, step by step, changing nothing."""
    upgrade = Upgrade.from_config(config, manager_from(ctx))
    try:
        result = upgrade.plan(offline=offline)
    finally:
        upgrade.close()
    if offline is not None and as_json:
        click.echo(json.dumps(list(result.changes), indent=2))
        return

    def text() -> str:
        lines = [
            f"{result.target}: {result.from_version} -> {result.to_version} with "
            f"{' + '.join((result.strategy, *result.layers))}"
        ]
        lines += [f"  {s.phase:<14} {s.action:<22} {s.detail}" for s in result.steps]
        if offline is not None:
            lines.append(f"objects it would send ({len(result.changes)}):")
            lines += [json.dumps(change, indent=2) for change in result.changes]
        return "\n".join(lines)

    emit(result.to_dict(), as_json, text)


def run_upgrade(
    upgrade: Upgrade, *, as_json: bool, resume: str | None = None, actor: str | None = None
) -> None:
    """Run ``upgrade`` with progress on stderr, print its report, and exit with its code."""
    console = stderr_console()
    observer = ProgressObserver(console)
    upgrade.manager.register(observer, name="zdu-cli-progress")
    if upgrade.config.metrics_address:
        console.print(
            f"metrics of the upgrade: http://{upgrade.config.metrics_address}/metrics", highlight=False
        )
    try:
        with interruptible(upgrade.cancel, console), WarningSummary().holding(console):
            report = upgrade.run(resume=resume, actor=actor)
    finally:
        upgrade.manager.unregister(observer)
        upgrade.close()
    emit(report.to_dict(), as_json, report.summary)
    sys.exit(report_exit_code(report))


@cli.command()
@config_argument
@json_option
@click.option("--resume", "resume", metavar="ID", help="Continue the paused or interrupted upgrade ID.")
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve the upgrade's Prometheus metrics here while it runs (default: upgrade.metrics_address).",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    help="Push the metrics to this Pushgateway at the end (default: upgrade.pushgateway).",
)
@click.pass_context
def upgrade(
    ctx: click.Context,
    config: Path,
    as_json: bool,
    resume: str | None,
    metrics_address: str | None,
    pushgateway: str | None,
) -> None:
    """Upgrade the target in CONFIG to its release, gated by the probes."""
    upgrade_ = Upgrade.from_config(config, manager_from(ctx))
    with_outputs(upgrade_, metrics_address, pushgateway)
    run_upgrade(upgrade_, as_json=as_json, resume=resume)


def with_outputs(upgrade_: Upgrade, metrics_address: str | None, pushgateway: str | None) -> None:
    """Apply ``--metrics-address`` and ``--pushgateway`` over the configuration's."""
    if metrics_address is not None:
        try:
            parse_address(metrics_address)
        except ValueError as error:
            raise UsageError(f"--metrics-address: {error}") from None
        upgrade_.config = attrs.evolve(upgrade_.config, metrics_address=metrics_address)
    if pushgateway is not None:
        if not pushgateway.startswith(("http://", "https://")):
            raise UsageError(f"--pushgateway: expected an http(s) URL, got {pushgateway!r}")
        upgrade_.config = attrs.evolve(upgrade_.config, pushgateway=pushgateway)


def _config_of(journal: Journal, upgrade_id: str, config: Path | None) -> Path:
    record = journal.get(upgrade_id)
    if record is None:
        raise UsageError(f"no upgrade {upgrade_id!r} in the journal {journal.path}")
    if config is not None:
        return config
    source = str(record.config.get("source") or "")
    if not source:
        raise UsageError(f"upgrade {upgrade_id} was not started from a file: give --config CONFIG")
    return Path(source)


journal_option = click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The journal file (default: the one of --config, else $ZDU_STATE_DIR/journal.sqlite).",
)
config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A configuration file: its upgrade.state_dir holds the journal.",
)


upgrade_config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration (default: the one the upgrade started with).",
)


def _upgrade_of(
    ctx: click.Context, upgrade_id: str, config: Path | None, journal_path: Path | None
) -> Upgrade:
    journal = open_journal(ctx, journal_path, config, upgrade_id)
    return Upgrade.from_config(_config_of(journal, upgrade_id, config), manager_from(ctx))


def open_journal(
    ctx: click.Context, journal_path: Path | None, config: Path | None, upgrade_id: str | None = None
) -> Journal:
    """The journal named by ``--journal``, else the one of ``--config``, else one found.

    Found: the first journal holding ``upgrade_id`` among the default one, those of the
    configuration files here and those upgrades began in (:mod:`zdu.journals`); without an id, or
    when none holds it, the default one.
    """
    if journal_path is not None:
        return Journal(journal_path)
    if config is not None:
        return Journal(load_config(config, manager_from(ctx)).journal_path)
    if upgrade_id is not None:
        for path in candidate_journals():
            journal = Journal(path)
            if journal.get(upgrade_id) is not None:
                return journal
        searched = ", ".join(str(p) for p in candidate_journals()) or str(default_journal_path())
        raise UsageError(
            f"no upgrade {upgrade_id!r} in the journals {searched}; point at another with "
            "--journal FILE or --config CONFIG"
        )
    return Journal(default_journal_path())


@cli.command()
@click.argument("upgrade_id", metavar="ID")
@upgrade_config_option
@json_option
@journal_option
@click.option("--actor", metavar="WHO", help="Who resumes it, for the journal (default: user@host).")
@click.pass_context
def resume(
    ctx: click.Context,
    upgrade_id: str,
    config: Path | None,
    as_json: bool,
    journal_path: Path | None,
    actor: str | None,
) -> None:
    """Resume a paused or interrupted upgrade from the phase it was in."""
    upgrade_ = _upgrade_of(ctx, upgrade_id, config, journal_path)
    run_upgrade(upgrade_, as_json=as_json, resume=upgrade_id, actor=actor)


@cli.command()
@click.argument("upgrade_id", metavar="ID")
@upgrade_config_option
@json_option
@journal_option
@click.pass_context
def rollback(
    ctx: click.Context, upgrade_id: str, config: Path | None, as_json: bool, journal_path: Path | None
) -> None:
    """Roll back a paused or interrupted upgrade (refused after post-deployment migrations)."""
    upgrade_ = _upgrade_of(ctx, upgrade_id, config, journal_path)
    try:
        report = upgrade_.rollback(upgrade_id)
    finally:
        upgrade_.close()
    emit(report.to_dict(), as_json, report.summary)
    sys.exit(0 if report.status is UpgradeStatus.ROLLED_BACK else EXIT_FAILED)


actor_option = click.option(
    "--actor",
    metavar="WHO",
    help="Who decides, for the journal (default: user@host).",
)


def _control_journal(
    ctx: click.Context, upgrade_id: str, journal_path: Path | None, config: Path | None
) -> Journal:
    journal = open_journal(ctx, journal_path, config, upgrade_id)
    if journal.get(upgrade_id) is None:
        raise UsageError(f"no upgrade {upgrade_id!r} in the journal {journal.path}")
    return journal


@cli.command()
@click.argument("upgrade_id", metavar="ID")
@actor_option
@json_option
@journal_option
@config_option
@click.pass_context
def pause(
    ctx: click.Context,
    upgrade_id: str,
    actor: str | None,
    as_json: bool,
    journal_path: Path | None,
    config: Path | None,
) -> None:
    """Stop a running upgrade at its next safe point, paused ('zdu resume ID' continues it)."""
    event = controls.pause(
        upgrade_id, journal=_control_journal(ctx, upgrade_id, journal_path, config), actor=actor
    )
    emit(
        {"upgrade_id": upgrade_id, "requested_at": event.at, "by": event.data["by"]},
        as_json,
        lambda: f"{upgrade_id}: pause requested by {event.data['by']}; it stops at its next safe point",
    )


@cli.command()
@click.argument("upgrade_id", metavar="ID")
@actor_option
@json_option
@journal_option
@upgrade_config_option
@click.pass_context
def abort(
    ctx: click.Context,
    upgrade_id: str,
    actor: str | None,
    as_json: bool,
    journal_path: Path | None,
    config: Path | None,
) -> None:
    """Roll an upgrade back to the old version (refused after post-deployment migrations started).

    A running upgrade rolls back at its next safe point; a paused or interrupted one is rolled back
    here and now, as 'zdu rollback ID' does.
    """
    journal = _control_journal(ctx, upgrade_id, journal_path, config)
    record = controls.current_record(journal, upgrade_id)
    if record.status is UpgradeStatus.RUNNING or not record.status.in_progress:
        event = controls.abort(upgrade_id, journal=journal, actor=actor)
        emit(
            {"upgrade_id": upgrade_id, "requested_at": event.at, "by": event.data["by"]},
            as_json,
            lambda: (
                f"{upgrade_id}: abort requested by {event.data['by']}; it rolls back at its next safe point"
            ),
        )
        return
    controls.check_abortable(journal, upgrade_id)
    by = actor or default_actor()
    journal.record(upgrade_id, record.phase or "", ABORT_EVENT, f"aborted by {by}", {"by": by})
    upgrade_ = _upgrade_of(ctx, upgrade_id, config, journal_path)
    try:
        report = upgrade_.rollback(upgrade_id)
    finally:
        upgrade_.close()
    emit(report.to_dict(), as_json, report.summary)
    sys.exit(0 if report.status is UpgradeStatus.ROLLED_BACK else EXIT_FAILED)


@cli.command()
@click.argument("upgrade_id", metavar="ID")
@click.option("--full", is_flag=True, help="Skip every remaining analysis and canary step too.")
@actor_option
@json_option
@journal_option
@config_option
@click.pass_context
def promote(
    ctx: click.Context,
    upgrade_id: str,
    full: bool,
    actor: str | None,
    as_json: bool,
    journal_path: Path | None,
    config: Path | None,
) -> None:
    """Let a running upgrade skip its remaining waits and pauses (recorded in the journal)."""
    event = controls.promote(
        upgrade_id, full=full, journal=_control_journal(ctx, upgrade_id, journal_path, config), actor=actor
    )
    emit(
        {"upgrade_id": upgrade_id, "promoted_at": event.at, "by": event.data["by"], "full": full},
        as_json,
        lambda: (
            f"{upgrade_id}: {'fully ' if full else ''}promoted by {event.data['by']}; "
            "the running upgrade skips its remaining waits and pauses"
            + (", analysis and steps" if full else "")
        ),
    )


@cli.group()
def migrate() -> None:
    """Run migrations outside an upgrade."""


@migrate.command("post")
@config_argument
@json_option
@click.pass_context
def migrate_post(ctx: click.Context, config: Path, as_json: bool) -> None:
    """Run the post-deployment migrations once the whole fleet serves the release (no way back after)."""
    upgrade_ = Upgrade.from_config(config, manager_from(ctx))
    try:
        result = upgrade_.migrate_post()
    finally:
        upgrade_.close()
    emit(result.to_dict(), as_json, result.summary)
    sys.exit(0 if result.status is UpgradeStatus.SUCCEEDED else EXIT_FAILED)


@cli.command()
@click.option("--target", help="Only this target's upgrades.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@journal_option
@config_option
@click.pass_context
def status(
    ctx: click.Context,
    target: str | None,
    limit: int,
    as_json: bool,
    journal_path: Path | None,
    config: Path | None,
) -> None:
    """List recent upgrades, those in progress first (from every journal found, unless one is named)."""
    records = _records_of(ctx, journal_path, config, target, limit)

    def text() -> str:
        if not records:
            return "no upgrades recorded (give --config CONFIG or --journal FILE to read another journal)"
        return "\n".join(
            f"{r.id}  {r.target:<20} {r.from_version} -> {r.to_version:<12} {r.strategy:<10} "
            f"{r.status.value:<12} {r.phase or ''}"
            for r in records
        )

    emit({"upgrades": [r.to_dict() for r in records]}, as_json, text)


@cli.command()
@click.argument("upgrade_id", metavar="ID")
@json_option
@journal_option
@config_option
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write one self-contained HTML page: timeline picture, gate decisions, events, config.",
)
@click.pass_context
def report(
    ctx: click.Context,
    upgrade_id: str,
    as_json: bool,
    journal_path: Path | None,
    config: Path | None,
    html: Path | None,
) -> None:
    """Print the report of one upgrade: phases with times, gate decisions, the probes' figures, events."""
    show_report(ctx, upgrade_id, as_json, open_journal(ctx, journal_path, config, upgrade_id), html)


@cli.command()
@json_option
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed strategies, traffic layers, probes, platforms and migration runners.

    Then the plugins that are not loaded: unavailable ones (an optional dependency is not installed;
    with the command that installs it), and failed ones (any other error, with the error).
    """
    manager = manager_from(ctx)
    kinds = {
        "strategies": manager.strategies(),
        "traffic_layers": manager.traffic_layers(),
        "probes": manager.probes(),
        "platforms": manager.platforms(),
        "migration_runners": manager.migration_runners(),
    }
    data: dict[str, Any] = {
        kind: [
            {
                "name": name,
                "summary": record.summary,
                "distribution": manager.provider_of(record),
                **_capabilities_of(record),
            }
            for name, record in records.items()
        ]
        for kind, records in kinds.items()
    }
    unavailable = [f for f in manager.failures if f.unavailable]
    failed = [f for f in manager.failures if not f.unavailable]
    # every plugin not loaded, unavailable ones included ("unavailable": true, with "install")
    data["failed"] = [
        {
            "plugin": f.name,
            "distribution": f.distribution,
            "error": f.error,
            "extra": f.extra,
            "unavailable": f.unavailable,
            "install": f.install,
        }
        for f in manager.failures
    ]

    def text() -> str:
        lines = []
        for kind, records in kinds.items():
            lines.append(f"{kind.replace('_', ' ')}:")
            for name, record in records.items():
                lines.append(f"  {name:<14} {record.summary}  [{manager.provider_of(record)}]")
                lines += [
                    f"  {'':<14} {key}: {', '.join(names) or 'nothing beyond the base platform'}"
                    for key, names in _capabilities_of(record).items()
                ]
        if unavailable:
            lines.append("unavailable (an optional dependency is not installed):")
            lines += [
                f"  {f.name:<14} {f.install}  [{f.distribution}] ({f.error.partition(': ')[2]})"
                for f in unavailable
            ]
        lines += [f"not loaded: {f.describe()}" for f in failed]
        return "\n".join(lines)

    emit(data, as_json, text)


def _capabilities_of(record: object) -> dict[str, list[str]]:
    """What a platform record provides, or what a strategy, layer or runner record requires."""
    if isinstance(record, PlatformPlugin):
        return {"provides": sorted(record.provides)}
    if isinstance(record, StrategyPlugin | TrafficLayerPlugin | MigrationRunnerPlugin):
        return {"requires": sorted(record.requires)}
    return {}


def _records_of(
    ctx: click.Context, journal_path: Path | None, config: Path | None, target: str | None, limit: int
) -> list[UpgradeRecord]:
    """Recent upgrades of the named journal, else of every journal found; says which on stderr."""
    if journal_path is not None or config is not None:
        journals = [open_journal(ctx, journal_path, config)]
    else:
        journals = [Journal(p) for p in candidate_journals()] or [Journal(default_journal_path())]
    stderr_console().print(
        f"[dim]journal{'s' if len(journals) > 1 else ''}: {', '.join(str(j.path) for j in journals)}[/dim]"
    )
    records = [r for journal in journals for r in journal.upgrades(target, limit)]
    records.sort(key=lambda r: (not r.status.in_progress, -r.started_at))
    return records[:limit]


def show_report(
    ctx: click.Context, upgrade_id: str, as_json: bool, journal: Journal, html: Path | None
) -> None:
    """Print one upgrade's report (and write its HTML page); which journal it read goes to stderr."""
    view = load_view(journal, upgrade_id)
    console = stderr_console()
    console.print(f"[dim]journal: {journal.path}[/dim]")
    if html is not None:
        render_html(view, html)
        console.print(f"HTML report: {html.resolve()}", highlight=False, markup=False)
    timings = migration_timings(list(view.events))
    data = {
        **view.record.to_dict(),
        "journal": str(journal.path),
        "report": view.record.report,
        "migrations": [t.to_dict() for t in timings],
        "events": [
            {"at": e.at, "phase": e.phase, "kind": e.kind, "message": e.message, "data": dict(e.data)}
            for e in view.events
        ],
    }

    def text() -> str:
        lines = [render_text(view)]
        if timings:
            lines.append("migrations (seconds; lock wait: time lost to attempts that gave up on a lock):")
            lines += [
                f"  {t.stage:<5} {t.migration:<50} {t.duration_s:>8.2f}s  attempts {t.attempts}  "
                f"lock wait {t.lock_wait_s:.2f}s"
                for t in timings
            ]
        return "\n".join(lines)

    emit(data, as_json, text)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``zdu`` command."""
    install_redaction()  # nothing printed holds a secret
    manager = get_plugin_manager()
    manager.notify("zdu_commands", cli=cli)
    console = stderr_console()
    try:
        code = cli.main(args=argv, prog_name="zdu", obj=manager, standalone_mode=False)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        console.print("aborted")
        code = 130
    except UsageError as error:
        for line in error.problems if isinstance(error, ConfigError) else [str(error)]:
            console.print(f"zdu: error: {line}", markup=False)
        code = EXIT_BAD_INPUT
    except TargetBusy as error:
        console.print(f"zdu: error: {error}", markup=False)
        code = EXIT_BUSY
    except ZduError as error:
        console.print(f"zdu: error: {error}", markup=False)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        console.print("interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


cli.add_command(fleet)
