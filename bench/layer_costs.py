"""Measure what the traffic layers cost: load balance under sticky sessions, storage of the assets shim.

A fresh local fleet (3 demo-app instances behind nginx) is upgraded with ``rolling`` twice per layer
setting, under the http probe's browser-like traffic. While both versions serve, every page request is
compared with the routing in force when it started: the share of pages the new version served against
its share of the routed instances (what balancing by weight gives), and the requests each instance of
the old and of the new version took per second. The assets store's size per published version is
read from the store. Prints a Markdown table (copied into docs/traffic-layers.md).

    python bench/layer_costs.py [--rps 150] [--clients 20] [--session-pages 20]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import shutil
import tempfile
import threading
import time
from pathlib import Path

from zdu.config import load_config
from zdu.model import Version
from zdu.platform import PlatformEnv
from zdu.probe import ProbeContext
from zdu.registry import get_plugin_manager
from zdu.upgrade import Upgrade
from zdu_local.demo import DemoTraffic, Scenario, _config, create_database, next_release
from zdu_local.platform import LocalPlatform
from zdu_probes.http import HttpProbe, HttpProbeConfig, RequestKind

START = Version.parse("16.6.0")


def measure(layers: tuple[str, ...], rps: float, clients: int, session_pages: int) -> dict[str, float]:
    manager = get_plugin_manager()
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-bench-"))
    to_version = next_release(START)
    scenario = Scenario("bench", "rolling", layers, options={"max_surge": 1, "max_unavailable": 0})
    database = state_dir / "gitlab.sqlite"
    create_database(database, START)
    raw = _config(scenario, state_dir, START, to_version, DemoTraffic(rps=rps, clients=clients), 3, database)
    raw["probes"] = []
    config = load_config(raw, manager)
    platform = LocalPlatform(config.platform.options, PlatformEnv(config.target, config.target_state_dir))
    samples: list[tuple[float, int, int]] = []  # (monotonic, routed old, routed new)
    stop = threading.Event()
    old_group, new_group = platform.group_name(START), platform.group_name(to_version)

    def sample() -> None:
        while not stop.wait(0.02):
            routed = platform.router.routed()
            samples.append(
                (
                    time.monotonic(),
                    sum(1 for i in routed if i.startswith(old_group + "-")),
                    sum(1 for i in routed if i.startswith(new_group + "-")),
                )
            )

    try:
        platform.up(START)
        probe = HttpProbe(
            HttpProbeConfig(rps=rps, clients=clients, session_pages=session_pages, max_failed_requests=None)
        )
        probe.start(ProbeContext(platform.router.url, config.target, config.release, START))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        upgrade = Upgrade(config, manager, verify_seconds=1.0)
        report = upgrade.run()
        stop.set()
        sampler.join()
        probe.stop()
        assert report.status.value == "succeeded", report.error
        store = platform.assets
        store_bytes = {str(v): store.size(v) for v in store.versions()} if store is not None else {}
    finally:
        stop.set()
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    times = [s[0] for s in samples]
    mixed_pages = 0
    new_pages = 0
    fair_new = 0.0
    old_instance_seconds = new_instance_seconds = 0.0
    old_requests = new_requests = 0
    records = probe.records()
    for record in records:
        index = bisect.bisect_right(times, record.started) - 1
        if index < 0:
            continue
        _, old, new = samples[index]
        if old == 0 or new == 0 or record.status != 200:
            continue
        if record.version == str(to_version):
            new_requests += 1
        elif record.version == str(START):
            old_requests += 1
        if record.kind is RequestKind.PAGE:
            mixed_pages += 1
            new_pages += record.version == str(to_version)
            fair_new += new / (old + new)
    for (at, old, new), (later, _, _) in itertools.pairwise(samples):
        if old and new:
            old_instance_seconds += old * (later - at)
            new_instance_seconds += new * (later - at)
    mixed = sum(later - at for (at, old, new), (later, _, _) in itertools.pairwise(samples) if old and new)
    return {
        "mixed_s": mixed,
        "pages": mixed_pages,
        "new_share": new_pages / mixed_pages if mixed_pages else 0.0,
        "fair_share": fair_new / mixed_pages if mixed_pages else 0.0,
        "old_rate": old_requests / old_instance_seconds if old_instance_seconds else 0.0,
        "new_rate": new_requests / new_instance_seconds if new_instance_seconds else 0.0,
        "asset_errors": sum(1 for r in records if r.asset_error),
        "store_bytes": store_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=150.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--session-pages", type=int, default=20)
    arguments = parser.parse_args()
    print(
        f"rolling, 3 instances, {arguments.rps:g} requests/s from {arguments.clients} clients, "
        f"a visit lasts {arguments.session_pages} pages\n"
    )
    print(
        "| layers | mixed for | pages then | new version's share of pages | its share of instances "
        "| req/s per old instance | req/s per new instance | asset errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    stores = {}
    for layers in ((), ("sticky-nginx",), ("assets-shim",)):
        figures = measure(layers, arguments.rps, arguments.clients, arguments.session_pages)
        if figures["store_bytes"]:
            stores = figures["store_bytes"]
        print(
            f"| {' + '.join(layers) or 'none'} | {figures['mixed_s']:.1f}s | {figures['pages']} "
            f"| {figures['new_share']:.0%} | {figures['fair_share']:.0%} "
            f"| {figures['old_rate']:.1f} | {figures['new_rate']:.1f} | {figures['asset_errors']} |",
            flush=True,
        )
    print(f"\nassets store: bytes per published version: {stores}")


if __name__ == "__main__":
    main()
