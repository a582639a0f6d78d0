"""Measure each strategy's rollout against its physical floor: start-up and drain, measured in the same run.

A rollout cannot be faster than the instances let it: ``rolling`` (max_surge 1, max_unavailable 0) of
N instances starts and drains one at a time, so its floor is ``N * (start + drain)``; ``blue-green``
starts the whole new set at once and switches, so its floor is the start of N instances side by side
(plus the preview analysis it is asked for, 0 here); ``canary`` walks its steps (pauses 0 here), so
its floor is the start of its instances as the steps ask for them plus the last drain... reported
against ``N * start`` for comparison. Everything is measured on this machine in this run:

* ``start``: the median, over a few spawns, from spawning a demo-app instance (the platform's own
  command, its start-up delay included) until its readiness check answers 200, asked every 2 ms;
* ``start N``: the same for N instances spawned together (what blue-green waits for);
* ``drain``: from SIGTERM to the exit of an idle instance (its graceful shutdown), as the platform's
  drain ends with it;
* ``rollout``: the ``rollout`` phase of a real upgrade of a fresh N-instance fleet behind nginx, under
  a light gating probe.

    python bench/floor.py [--replicas 3] [--startup 2.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zdu.plugins import PlatformEnv, Upgrade, Version, free_port, get_plugin_manager, http_status, load_config
from zdu_demo import demo_app_command
from zdu_demo.scenarios import create_database, next_release
from zdu_local.platform import LocalPlatform

START = Version.parse("16.6.0")
STRATEGIES: dict[str, dict[str, Any]] = {
    "rolling": {"max_surge": 1, "max_unavailable": 0},
    "blue-green": {"scale_down_delay": 0.0, "preview_seconds": 0.0},
    "canary": {"preview_seconds": 0.0, "steps": [{"weight": 34}, {"weight": 67}, {"weight": 100}]},
}


def _spawn(startup: float, version: str, database: Path) -> tuple[subprocess.Popen[bytes], int]:
    """An instance as the platform runs it: the same command, its database included."""
    port = free_port("127.0.0.1")
    command = [
        part.format(version=version, port=port, host="127.0.0.1")
        for part in demo_app_command(startup, "--database", str(database))
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while http_status("127.0.0.1", port, "/-/readiness", timeout=1.0) != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"instance on port {port} did not become ready")
        time.sleep(0.002)


def measure_start(startup: float, count: int, database: Path) -> float:
    """Seconds from spawning ``count`` instances together until every one is ready."""
    began = time.monotonic()
    spawned = [_spawn(startup, "16.6.0", database) for _ in range(count)]
    try:
        for _process, port in spawned:
            _wait_ready(port)
        return time.monotonic() - began
    finally:
        for process, _port in spawned:
            process.kill()
            process.wait()


def measure_drain(startup: float, database: Path) -> float:
    """Seconds from SIGTERM to the exit of an idle, ready instance."""
    process, port = _spawn(startup, "16.6.0", database)
    try:
        _wait_ready(port)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        return time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def measure_rollout(strategy: str, replicas: int, startup: float) -> float:
    """The ``rollout`` phase of ``strategy`` upgrading a fresh fleet, in seconds."""
    manager = get_plugin_manager()
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-bench-floor-"))
    database = state_dir / "gitlab.sqlite"
    create_database(database, START)
    raw = {
        "target": {"name": "floor", "platform": "local", "version": str(START)},
        "platform": {
            "replicas": replicas,
            "command": demo_app_command(startup, "--database", str(database)),
            "drain_timeout": 10.0,
            "stop_grace": 10.0,
        },
        "release": {"version": str(next_release(START))},
        "strategy": {"name": strategy, **STRATEGIES[strategy]},
        # a light gating probe: the gates run as in a real upgrade, asset errors aside (no layer)
        "probes": [{"name": "http", "rps": 20, "clients": 4, "max_asset_errors": 1_000_000}],
        "upgrade": {"state_dir": str(state_dir)},
    }
    config = load_config(raw, manager)
    platform = LocalPlatform(config.platform.options, PlatformEnv(config.target, config.target_state_dir))
    try:
        platform.up(START)
        upgrade = Upgrade(config, manager, verify_seconds=0.0)
        report = upgrade.run()
        upgrade.close()
        if report.status.value != "succeeded":
            raise RuntimeError(f"{strategy}: {report.status.value}: {report.error}")
        return dict(report.phases)["rollout"]
    finally:
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)


def floors(start: float, start_all: float, drain: float, replicas: int) -> dict[str, float]:
    """Each strategy's floor from the measured start-up and drain."""
    return {
        "rolling": replicas * (start + drain),
        "blue-green": start_all,
        "canary": replicas * start,
    }


def measure(replicas: int = 3, startup: float = 2.0, rounds: int = 3) -> dict[str, Any]:
    """Start-up, drain, every strategy's rollout (medians over ``rounds``) and their floors."""
    starts, starts_all, drains = [], [], []
    rollouts: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    scratch = Path(tempfile.mkdtemp(prefix="zdu-bench-floor-"))
    database = scratch / "gitlab.sqlite"
    create_database(database, START)
    for _ in range(rounds):
        starts.append(measure_start(startup, 1, database))
        starts_all.append(measure_start(startup, replicas, database))
        drains.append(measure_drain(startup, database))
        for name in STRATEGIES:
            rollouts[name].append(measure_rollout(name, replicas, startup))
    shutil.rmtree(scratch, ignore_errors=True)
    start, start_all, drain = (statistics.median(v) for v in (starts, starts_all, drains))
    floor = floors(start, start_all, drain, replicas)
    return {
        "replicas": replicas,
        "startup_delay": startup,
        "start_s": start,
        "start_all_s": start_all,
        "drain_s": drain,
        "strategies": {
            name: {
                "rollout_s": statistics.median(values),
                "floor_s": floor[name],
                "ratio": statistics.median(values) / floor[name],
            }
            for name, values in rollouts.items()
        },
    }


def table(figures: dict[str, Any]) -> list[str]:
    """Markdown lines of the figures."""
    lines = [
        f"Start-up of one instance {figures['start_s']:.2f} s (start-up delay {figures['startup_delay']:g} s "
        f"plus the interpreter), of {figures['replicas']} together {figures['start_all_s']:.2f} s; "
        f"drain (SIGTERM to exit) {figures['drain_s']:.2f} s.",
        "",
        "| strategy | rollout | floor | rollout / floor | floor is |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    what = {
        "rolling": f"{figures['replicas']} x (start + drain)",
        "blue-green": f"start of {figures['replicas']} together",
        "canary": f"{figures['replicas']} x start (steps 34/67/100%)",
    }
    for name, row in figures["strategies"].items():
        lines.append(
            f"| {name} | {row['rollout_s']:.2f} s | {row['floor_s']:.2f} s | {row['ratio']:.2f}x "
            f"| {what[name]} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--startup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(STRATEGIES), action="append")
    arguments = parser.parse_args()
    if arguments.only:
        for name in list(STRATEGIES):
            if name not in arguments.only:
                del STRATEGIES[name]
    figures = measure(arguments.replicas, arguments.startup, arguments.rounds)
    print("\n".join(table(figures)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
