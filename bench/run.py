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

from layer_costs import measure  # bench/ is on sys.path when this file runs as a script

from zdu.registry import get_plugin_manager
from zdu_local.demo import DEFAULT_SCENARIOS, DemoRow, run_demo

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
    parser.add_argument("--rps", type=float, default=150.0)
    parser.add_argument("--clients", type=int, default=20)
    arguments = parser.parse_args()

    manager = get_plugin_manager()
    rows: dict[str, list[DemoRow]] = defaultdict(list)
    for round_number in range(arguments.rounds):
        print(f"round {round_number + 1} of {arguments.rounds}", flush=True)
        for scenario, row in zip(
            DEFAULT_SCENARIOS,
            run_demo(DEFAULT_SCENARIOS, manager=manager, rps=arguments.rps, clients=arguments.clients),
            strict=True,
        ):
            rows[scenario.key].append(row)

    def median(key: str, field: str) -> float:
        return statistics.median(float(getattr(row, field)) for row in rows[key])

    baseline = "recreate"
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        "",
        f"`nox -s bench`: {arguments.rounds} rounds; in each, a fresh local fleet of 3 demo-app instances "
        f"behind nginx is upgraded by every scenario in turn while the http probe sends "
        f"{arguments.rps:g} requests/s from {arguments.clients} browser-like clients. Medians over the "
        "rounds; ratios are to `recreate` (the maintenance-window baseline) measured in the same rounds.",
        "",
        "| scenario | duration | vs recreate | failed requests | vs recreate | longest outage | asset errors "
        "| p99 latency | vs recreate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in rows:
        lines.append(
            f"| {key} | {median(key, 'duration_s'):.1f} s "
            f"| {ratio(median(key, 'duration_s'), median(baseline, 'duration_s'))} "
            f"| {median(key, 'failed'):.0f} | {ratio(median(key, 'failed'), median(baseline, 'failed'))} "
            f"| {median(key, 'longest_outage_s'):.2f} s | {median(key, 'asset_errors'):.0f} "
            f"| {median(key, 'p99_ms'):.1f} ms | {ratio(median(key, 'p99_ms'), median(baseline, 'p99_ms'))} |"
        )
    lines += [
        "",
        "## What the traffic layers cost",
        "",
        "`bench/layer_costs.py`: one `rolling` upgrade per layer setting of a fresh 3-instance fleet under "
        f"{arguments.rps:g} requests/s from {arguments.clients} clients whose visits last 20 pages; "
        "while both "
        "versions serve, the new version's share of pages against its share of routed instances (what "
        "balancing by weight gives), and the requests each old and new instance took per second.",
        "",
        "| layers | versions mixed for | new version's share of pages | its share of instances "
        "| req/s per old instance | req/s per new instance | asset errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    store: object = {}
    for layers in ((), ("sticky-nginx",), ("assets-shim",)):
        figures = measure(layers, arguments.rps, arguments.clients, 20)
        store = figures["store_bytes"] or store
        lines.append(
            f"| {' + '.join(layers) or 'none'} | {figures['mixed_s']:.1f} s | {figures['new_share']:.0%} "
            f"| {figures['fair_share']:.0%} | {figures['old_rate']:.1f} | {figures['new_rate']:.1f} "
            f"| {figures['asset_errors']:.0f} |"
        )
    lines += [
        "",
        f"Assets store, bytes per published version: {store}.",
        "",
        "Reading it: the zero-downtime strategies take longer than `recreate` (they start and drain",
        "instances in batches, and blue-green keeps the old set for its scale-down delay) and in exchange",
        "lose no request. Durations include the `verify` phase (1 s in the demo).",
        "",
    ]
    OUTPUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
