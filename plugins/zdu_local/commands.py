"""``zdu local up|down CONFIG`` and ``zdu demo``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from zdu.plugins import (
    Journal,
    PlatformEnv,
    UpgradeRecord,
    UsageError,
    load_config,
    manager_from,
    stderr_console,
)
from zdu_demo.scenarios import DEFAULT_SCENARIOS, DemoTraffic, render_table
from zdu_local.demo import run_demo
from zdu_local.demo_reports import demo_journal, write_html_reports
from zdu_local.platform import LocalPlatform

__all__ = ["demo", "local"]


def _platform(ctx: click.Context, config_path: Path) -> tuple[LocalPlatform, str]:
    config = load_config(config_path, manager_from(ctx))
    if config.target.platform != "local":
        raise UsageError(
            f"target.platform is {config.target.platform!r}: 'zdu local' runs only "
            "targets on the local platform"
        )
    env = PlatformEnv(target=config.target, state_dir=config.target_state_dir)
    return LocalPlatform(config.platform.options, env), str(config.target.version)


@click.group()
def local() -> None:
    """Run a local fleet on its own: start it, point your tools at it, upgrade it, stop it."""


@local.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def up(ctx: click.Context, config: Path) -> None:
    """Start the target's fleet at its current version; print the router's URL once it serves.

    A fleet already up is left as it is; when it serves another version than target.version, that
    is said on stderr.
    """
    platform, version = _platform(ctx, config)
    from zdu.plugins import Version  # noqa: PLC0415

    url = platform.up(Version.parse(version))
    serving = [str(v) for v in platform.serving_versions()]
    if serving != [version]:
        stderr_console().print(
            f"the fleet was already up, serving {', '.join(serving) or 'no version'}, not target.version "
            f"{version}: left as it is ('zdu local down CONFIG' first to start it at {version})",
            markup=False,
        )
    click.echo(url)


@local.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def down(ctx: click.Context, config: Path) -> None:
    """Stop every process the fleet's ``up`` started (instances and nginx)."""
    platform, _ = _platform(ctx, config)
    platform.down()
    click.echo(f"stopped the fleet in {platform.state_dir}")


@local.command("router-upgrade")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--nginx",
    "program",
    default=None,
    help="The nginx program to run from now on (a name or a path); default: the config's platform.nginx.",
)
@click.pass_context
def router_upgrade(ctx: click.Context, config: Path, program: str | None) -> None:
    """Replace the fleet's nginx (new binary or version) under traffic, without dropping a connection.

    USR2 starts a new master beside the old one on the same sockets, WINCH retires the old workers
    (they finish what they hold: requests, downloads, websockets), QUIT the old master.
    """
    platform, _ = _platform(ctx, config)
    result = platform.router.upgrade(program)
    click.echo(
        f"nginx master {result.old.pid} -> {result.new.pid} ({result.binary}); the old one retires "
        f"after its {result.held_connections} open connections end"
    )


@local.command("status")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
@click.pass_context
def status_(ctx: click.Context, config: Path, as_json: bool) -> None:
    """Show what the fleet runs: the router, and each instance's version, address, pid and log."""
    from zdu_local.fleet_status import fleet_status, render_fleet_status  # noqa: PLC0415

    platform, _ = _platform(ctx, config)
    found = fleet_status(platform)
    click.echo(json.dumps(found, indent=2) if as_json else render_fleet_status(found))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout (the table goes to stderr).")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice([s.key for s in DEFAULT_SCENARIOS]),
    help="Run only these scenarios (repeatable); default: all.",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=1),
    default=200.0,
    show_default=True,
    help="The probe's offered rate: page views, API reads and writes per second (open loop).",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Browser-like visitors, each with its own cookies.",
)
@click.option(
    "--streams",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Long downloads (3 s each) in flight at any time.",
)
@click.option(
    "--sockets", type=click.IntRange(min=0), default=5, show_default=True, help="Websockets held open."
)
@click.option(
    "--independent/--no-independent",
    default=True,
    show_default=True,
    help="Cross-check with wrk's own traffic through the same router.",
)
@click.option(
    "--replicas", type=click.IntRange(min=1), default=3, show_default=True, help="Instances in the fleet."
)
@click.option(
    "--html",
    "html",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write an HTML report of each scenario and an index.html into DIR.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    as_json: bool,
    scenarios: tuple[str, ...],
    rps: float,
    clients: int,
    streams: int,
    sockets: int,
    independent: bool,
    replicas: int,
    html: Path | None,
) -> None:
    """Upgrade local fleets with each strategy under traffic and compare what users saw."""
    chosen = [s for s in DEFAULT_SCENARIOS if not scenarios or s.key in scenarios]
    traffic = DemoTraffic(rps=rps, clients=clients, streams=streams, sockets=sockets, independent=independent)
    journal, started = demo_journal(), time.time()
    try:
        rows = run_demo(
            chosen, manager=manager_from(ctx), traffic=traffic, replicas=replicas, journal=journal
        )
    finally:
        demo_outputs(journal, html, started)
    if as_json:
        click.echo(json.dumps({"scenarios": [row.to_dict() for row in rows]}, indent=2))
        click.echo(render_table(rows), err=True)  # the table for a person, beside the JSON for tools
    else:
        click.echo(render_table(rows))


def demo_outputs(journal: Journal, html: Path | None, started: float) -> None:
    """Say where the demo's upgrades (those since ``started``) are recorded; write their HTML reports."""
    console = stderr_console()
    records = [r for r in journal.upgrades(limit=100) if r.started_at >= started]
    records.sort(key=lambda r: r.started_at)
    console.print(
        f"the demo's upgrades are in the journal {journal.path}: 'zdu report ID' shows one "
        f"({', '.join(r.id for r in records) or 'none ran'})",
        highlight=False,
        markup=False,
    )
    if html is not None and records:
        scenarios = [(f"{r.strategy}-{r.to_version}", _title(r), r.id) for r in records]
        index = write_html_reports(journal, scenarios, html)
        console.print(f"HTML reports: {index.resolve()}", highlight=False, markup=False)


def _title(record: UpgradeRecord) -> str:
    return " + ".join((record.strategy, *record.layers))
