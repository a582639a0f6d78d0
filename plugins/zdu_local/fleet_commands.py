"""``zdu fleet demo``: the fleet demo on local cells (added to the core's ``fleet`` group)."""

from __future__ import annotations

import json

import click

from zdu.plugins import manager_from
from zdu_local.fleet_demo import render_fleet_table, run_fleet_demo

__all__ = ["fleet_demo"]


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
@click.option(
    "--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Instances per cell."
)
@click.option(
    "--rps", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Probe requests/s."
)
@click.pass_context
def fleet_demo(ctx: click.Context, as_json: bool, replicas: int, rps: float) -> None:
    """Three local cells in two rings; ring 0 gets a bad release, rolls back, and ring 1 is never touched."""
    rows = run_fleet_demo(manager=manager_from(ctx), replicas=replicas, rps=rps)
    if as_json:
        click.echo(json.dumps({"cells": [row.to_dict() for row in rows]}, indent=2))
    else:
        click.echo(render_fleet_table(rows))
