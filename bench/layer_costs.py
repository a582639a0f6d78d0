"""Measure what the traffic layers cost: load balance under affinity, storage of the assets shim.

A fresh local fleet (3 demo-app instances behind nginx) is upgraded with ``rolling`` (max_surge 1) once
per layer setting, under the http probe's browser-like traffic. By default the visitors keep their
cookies for the whole run (``--session-pages 0``): cookies outlive the upgrade, as a browser's do.

Per setting, from nginx's access log (which instance answered each request) and the routing sampled
every 20 ms:

* the share of requests the new version answered while both versions were routed, against its share
  of the routed instances (what balancing by weight gives);
* every second of the rollout, the busiest instance's requests against the balanced rate (all
  requests the instances answered that second over the instances routed): the worst second is
  reported, as the ratio and as both rates;
* p99 latency and asset errors, as the probe counted them.

The assets store's size per published version is read from the store. Prints Markdown tables
(copied into docs/traffic-layers.md).

    python bench/layer_costs.py [--rps 150] [--clients 20] [--session-pages 0]

``ZDU_BENCH_DEBUG=1`` prints, to stderr, the requests per instance of each second that became the worst.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from zdu.plugins import PlatformEnv, ProbeContext, Upgrade, Version, get_plugin_manager, load_config
from zdu_demo.scenarios import DemoTraffic, Scenario, create_database, next_release
from zdu_local.demo import demo_config
from zdu_local.platform import LocalPlatform
from zdu_probes.http import HttpProbe, HttpProbeConfig

START = Version.parse("16.6.0")
DEBUG = bool(os.environ.get("ZDU_BENCH_DEBUG"))

#: (label, layers, options of [layers]) per row.
SETTINGS: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    ("none", (), {}),
    ('sticky-nginx, affinity = "session"', ("sticky-nginx",), {"sticky-nginx": {"affinity": "session"}}),
    ('sticky-nginx, affinity = "assets"', ("sticky-nginx",), {"sticky-nginx": {"affinity": "assets"}}),
    ("assets-shim", ("assets-shim",), {}),
)

_LOG_LINE = re.compile(r" upstream=(?P<upstream>\S+) .* rt=(?P<rt>[0-9.]+) msec=(?P<msec>[0-9.]+)")


def _answered(access_log: Path) -> list[tuple[int, str]]:
    """(second it started, instance address) of every request an instance answered, from nginx's log.

    A request counts in the second nginx received it (``$msec - $request_time``), not the one it ended
    in: a slow answer is load the instance was given earlier.
    """
    answered = []
    for line in access_log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LOG_LINE.search(line)
        if match is None or match["upstream"] == "-":
            continue
        started = float(match["msec"]) - float(match["rt"])
        answered.append((int(started), match["upstream"].split(",")[-1].strip()))
    return answered


def measure(
    layers: tuple[str, ...], options: dict[str, Any], rps: float, clients: int, session_pages: int
) -> dict[str, Any]:
    """Upgrade a fresh fleet with ``layers`` under traffic; return the figures of the module docstring."""
    manager = get_plugin_manager()
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-bench-"))
    to_version = next_release(START)
    scenario = Scenario("bench", "rolling", layers, options={"max_surge": 1, "max_unavailable": 0})
    database = state_dir / "gitlab.sqlite"
    create_database(database, START)
    raw = demo_config(
        scenario, state_dir, START, to_version, DemoTraffic(rps=rps, clients=clients), 3, database
    )
    raw["probes"] = []
    if options:
        raw["layers"] = options
    config = load_config(raw, manager)
    platform = LocalPlatform(config.platform.options, PlatformEnv(config.target, config.target_state_dir))
    samples: list[tuple[float, frozenset[str]]] = []  # (time.time(), routed instance ids)
    groups: dict[str, str] = {}  # address -> group, of every instance seen
    names: dict[str, str] = {}  # address -> instance id
    stop = threading.Event()
    old_group, new_group = platform.group_name(START), platform.group_name(to_version)

    def sample() -> None:
        while not stop.wait(0.02):
            for instance in platform.state.instances:
                groups[instance.address] = instance.group
                names[instance.address] = instance.id
            # what the configuration in force routes, as nginx itself says (the state lags it)
            served = platform.router.routing()
            routed = served.get("routed") if served is not None else None
            if isinstance(routed, list):
                samples.append((time.time(), frozenset(str(i) for i in routed)))

    try:
        platform.up(START)
        probe = HttpProbe(
            HttpProbeConfig(rps=rps, clients=clients, session_pages=session_pages, max_failed_requests=None)
        )
        probe.start(ProbeContext(platform.router.url, config.target, config.release, START))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(2.0)  # visitors get their cookies from the old version before the upgrade
        began = time.time()
        report = Upgrade(config, manager, verify_seconds=1.0).run()
        ended = time.time()
        stop.set()
        sampler.join()
        verdict = probe.stop()
        assert report.status.value == "succeeded", report.error
        store = platform.assets
        store_bytes = {str(v): store.size(v) for v in store.versions()} if store is not None else {}
        time.sleep(1.5)  # nginx flushes its access log buffer every second
        answered = _answered(platform.router.nginx.prefix / "logs" / "access.log")
    finally:
        stop.set()
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)

    # the routing in each whole second of the rollout: how much of the second each instance was routed
    presence: dict[int, Counter[str]] = defaultdict(Counter)
    sampled: Counter[int] = Counter()
    for at, routed in samples:
        second = int(at)
        sampled[second] += 1
        for instance in routed:
            presence[second][instance] += 1
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for second, address in answered:
        counts[second][names.get(address, address)] += 1
    group_of = {names[address]: group for address, group in groups.items() if address in names}

    worst = (0.0, 0.0, 0.0)  # (ratio, busiest rate, balanced rate)
    mixed_requests: Counter[str] = Counter()
    mixed_instance_share = []
    mixed_seconds = 0
    for second in range(int(began) + 1, int(ended)):
        if sampled[second] < 10:
            continue
        share = {i: n / sampled[second] for i, n in presence[second].items()}
        total = sum(counts[second].values())
        balanced = total / sum(share.values()) if share else 0.0
        whole = [counts[second][i] for i, s in share.items() if s >= 1.0]
        if balanced and whole and max(whole) / balanced > worst[0]:
            worst = (max(whole) / balanced, float(max(whole)), balanced)
            if DEBUG:
                print(second - int(began), dict(counts[second]), share, file=sys.stderr)
        routed_groups = [group_of.get(i) for i, s in share.items() if s >= 1.0]
        old, new = routed_groups.count(old_group), routed_groups.count(new_group)
        if old and new and len(routed_groups) == len(share):  # both versions routed the whole second
            mixed_seconds += 1
            mixed_instance_share.append(new / (old + new))
            for instance, n in counts[second].items():
                mixed_requests[group_of.get(instance, "")] += n
    mixed_total = mixed_requests[old_group] + mixed_requests[new_group]
    values = verdict.values
    return {
        "rollout_s": ended - began,
        "mixed_s": mixed_seconds,
        "new_share": mixed_requests[new_group] / mixed_total if mixed_total else 0.0,
        "fair_share": sum(mixed_instance_share) / len(mixed_instance_share) if mixed_instance_share else 0.0,
        "worst": worst,
        "p99_ms": float(values.get("p99_ms", 0.0)),
        "asset_errors": int(values.get("asset_errors", 0)),
        "failed": int(values.get("failed_requests", 0)),
        "store_bytes": store_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=150.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--session-pages", type=int, default=0, help="pages per visit; 0: visitors keep their cookies"
    )
    parser.add_argument("--only", choices=[label for label, _, _ in SETTINGS], action="append")
    arguments = parser.parse_args()
    visits = (
        "visitors keep their cookies for the whole run"
        if arguments.session_pages == 0
        else f"a visit lasts {arguments.session_pages} pages"
    )
    print(
        f"rolling (max_surge 1), 3 instances, {arguments.rps:g} requests/s from {arguments.clients} "
        f"clients, {visits}\n"
    )
    print(
        "| layer setting | rollout | both versions routed | new version's share of requests "
        "| its share of instances | busiest instance / balanced (worst second) | p99 | asset errors "
        "| failed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    stores = {}
    for label, layers, options in SETTINGS:
        if arguments.only and label not in arguments.only:
            continue
        figures = measure(layers, options, arguments.rps, arguments.clients, arguments.session_pages)
        if figures["store_bytes"]:
            stores = figures["store_bytes"]
        ratio, busiest, balanced = figures["worst"]
        print(
            f"| {label} | {figures['rollout_s']:.1f}s | {figures['mixed_s']}s | {figures['new_share']:.0%} "
            f"| {figures['fair_share']:.0%} | {ratio:.2f}x ({busiest:.0f} vs {balanced:.1f} req/s) "
            f"| {figures['p99_ms']:.0f}ms | {figures['asset_errors']} | {figures['failed']} |",
            flush=True,
        )
    print(f"\nassets store: bytes per published version: {stores}")


if __name__ == "__main__":
    main()
