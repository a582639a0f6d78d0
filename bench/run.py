"""Benchmark the strategies on the local platform against the recreate baseline, in one run.

Each round starts a fresh fleet and upgrades it with every demo scenario under the same probe
traffic; the figures of each scenario are reported as medians over the rounds and as ratios to
``recreate`` measured in the same rounds. Results go to docs/benchmarks.md with the machine and
the date.

    nox -s bench                 # 3 rounds
    nox -s bench -- --rounds 5
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path

import floor
import probe_capacity  # bench/ is on sys.path when this file runs as a script
from layer_costs import SETTINGS, measure

from zdu.plugins import get_plugin_manager
from zdu_demo.scenarios import DEFAULT_SCENARIOS, DemoRow, DemoTraffic, render_table
from zdu_local.demo import run_demo

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {version}"
    )


def ratio(value: float, baseline: float) -> str:
    if baseline == 0:
        return "n/a" if value == 0 else "inf"
    return f"{value / baseline:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--clients", type=int, default=20)
    arguments = parser.parse_args()

    # the probe's own capacity first, on an idle machine
    capacity = probe_capacity.measure()

    manager = get_plugin_manager()
    traffic = DemoTraffic(rps=arguments.rps, clients=arguments.clients)
    rows: dict[str, list[DemoRow]] = defaultdict(list)
    last_round: list[DemoRow] = []
    for round_number in range(arguments.rounds):
        print(f"round {round_number + 1} of {arguments.rounds}", flush=True)
        last_round = run_demo(DEFAULT_SCENARIOS, manager=manager, traffic=traffic)
        for scenario, row in zip(DEFAULT_SCENARIOS, last_round, strict=True):
            rows[scenario.key].append(row)

    def median(key: str, field: str) -> float:
        return statistics.median(float(getattr(row, field)) for row in rows[key])

    def median_independent(key: str) -> str:
        counts = [row.independent for row in rows[key] if row.independent is not None]
        if not counts:
            return "-"
        return f"{statistics.median(c.failed for c in counts):.0f}"

    baseline = "recreate"
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        "",
        "## The probe's capacity",
        "",
        "`bench/probe_capacity.py`: a local fleet of 3 demo-app instances behind nginx (retries off); wrk, "
        "closed loop, saturates it, then the http probe sends API reads open loop at rising rates. A rate is "
        "sustained when every scheduled request was sent and recorded at the offered rate and none failed.",
        "",
        *probe_capacity.table(capacity),
        "",
        "## Strategies against recreate",
        "",
        f"`nox -s bench`: {arguments.rounds} rounds; in each, fresh local fleets of 3 demo-app instances "
        f"behind nginx (retries off) are upgraded by every demo scenario while the http probe offers "
        f"{arguments.rps:g} requests/s open loop (half page views with their assets, 30% API reads, 20% "
        f"writes read back) from {arguments.clients} visitors, with {traffic.streams} long downloads of "
        f"{traffic.stream_seconds:g} s and {traffic.sockets} websockets held, and wrk sends its own page "
        "views and writes. Medians over the rounds; ratios are to `recreate` (the maintenance-window "
        "baseline) measured in the same rounds.",
        "",
        "| scenario | role | duration | vs recreate | failed requests | vs recreate | lost writes "
        "| cut streams | dropped sockets | wrk failed | longest outage | asset errors | p99 latency "
        "| vs recreate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in rows:
        lines.append(
            f"| {key} | {rows[key][0].role} | {median(key, 'duration_s'):.1f} s "
            f"| {ratio(median(key, 'duration_s'), median(baseline, 'duration_s'))} "
            f"| {median(key, 'failed'):.0f} | {ratio(median(key, 'failed'), median(baseline, 'failed'))} "
            f"| {median(key, 'lost_writes'):.0f} | {median(key, 'cut_streams'):.0f} "
            f"| {median(key, 'dropped_sockets'):.0f} | {median_independent(key)} "
            f"| {median(key, 'longest_outage_s'):.2f} s | {median(key, 'asset_errors'):.0f} "
            f"| {median(key, 'p99_ms'):.1f} ms | {ratio(median(key, 'p99_ms'), median(baseline, 'p99_ms'))} |"
        )
    floor_figures = floor.measure(rounds=arguments.rounds)
    lines += [
        "",
        "## Rollouts against their floor",
        "",
        "`bench/floor.py`: the `rollout` phase of each strategy on a fresh fleet of 3 demo-app instances "
        "(start-up delay 2 s) against the floor its instances allow, start-up and drain measured in the "
        "same run; medians over the rounds.",
        "",
        *floor.table(floor_figures),
    ]
    lines += [
        "",
        f"The demo's table, as `zdu demo` prints it, from round {arguments.rounds}:",
        "",
        "```",
        *render_table(last_round).rstrip().splitlines(),
        "```",
        "",
        "## What the traffic layers cost",
        "",
        "`bench/layer_costs.py`: one `rolling` upgrade per layer setting of a fresh 3-instance fleet under "
        f"{arguments.rps:g} requests/s from {arguments.clients} clients who keep their cookies for the "
        "whole run; while both versions are routed, the new version's share of the requests the "
        "instances answered against its share of the routed instances (what balancing by weight gives); "
        "for every second of the rollout, the busiest instance's requests against the balanced rate "
        "(the worst second shown); p99 and asset errors.",
        "",
        "| layer setting | versions mixed for | new version's share of requests | its share of instances "
        "| busiest instance / balanced (worst second) | p99 | asset errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    store: object = {}
    for label, layers, options in SETTINGS:
        figures = measure(layers, options, arguments.rps, arguments.clients, 0)
        store = figures["store_bytes"] or store
        worst, busiest, balanced = figures["worst"]
        lines.append(
            f"| {label} | {figures['mixed_s']} s | {figures['new_share']:.0%} "
            f"| {figures['fair_share']:.0%} | {worst:.2f}x ({busiest:.0f} vs {balanced:.1f} req/s) "
            f"| {figures['p99_ms']:.0f} ms | {figures['asset_errors']:.0f} |"
        )
    lines += [
        "",
        f"Assets store, bytes per published version: {store}.",
        "",
        "Reading it: the zero-downtime strategies take longer than `recreate` (they start and drain",
        "instances in batches, a drain waits for the long downloads in flight, and blue-green keeps the",
        "old set for its scale-down delay) and in exchange lose no request, no write, no stream and no",
        "websocket. Durations include the `verify` phase (1 s in the demo).",
        "",
    ]
    OUTPUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
