"""Measure the http probe's capacity against wrk on the same stack, in the same run.

The stack: a local fleet of demo-app instances behind nginx (retries off), sharing their database; the
request, for both tools, is the API read of a project (``/api/v4/projects/1``, read from the database
in the app's thread pool, as GitLab's Puma would). First wrk, closed loop with
enough connections to saturate the stack, gives the stack's throughput. Then the probe, open loop,
sends API reads at rising rates for a few seconds each; a rate is *sustained* when every scheduled
request was sent and recorded (achieved rate within 3% of the offered one), none failed and none was
refused by the probe's in-flight cap. The probe's capacity is the highest rate sustained; the ratio
to wrk's throughput says how much of the stack the probe can exercise.

    python bench/probe_capacity.py [--seconds 6] [--replicas 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from zdu.plugins import PlatformEnv, ProbeContext, Version, get_plugin_manager, load_config
from zdu_demo import demo_app_command
from zdu_demo.crosscheck import find_wrk
from zdu_demo.scenarios import create_database
from zdu_local.platform import LocalPlatform
from zdu_probes.http import HttpProbe, HttpProbeConfig

VERSION = Version.parse("16.6.0")
#: GitLab-shaped: the API read of a project, which the demo app answers from its database
PATH = "/api/v4/projects/1"


def wrk_throughput(url: str, seconds: float, connections: int, *, close: bool = False) -> float:
    """wrk's requests per second, closed loop over ``connections`` (2 threads), with no error tolerated.

    ``close``: a connection per request (``Connection: close``), as the probe opens them.
    """
    headers = ["-H", "Connection: close"] if close else []
    done = subprocess.run(
        [find_wrk(), "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", *headers, url + PATH],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk saw errors, not a throughput: {done.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if match is None:
        raise RuntimeError(f"no throughput in wrk's output: {done.stdout}")
    return float(match[1])


def probe_at(url: str, config: Any, rate: float, seconds: float) -> dict[str, float]:
    """Run the probe open loop at ``rate`` API reads per second for ``seconds``; its figures."""
    probe = HttpProbe(
        HttpProbeConfig(
            rps=rate,
            mix={"page": 0.0, "api": 1.0, "write": 0.0},
            api_path=PATH,
            timeout=5.0,
            max_failed_requests=None,
        )
    )
    probe.start(ProbeContext(url, config.target, config.release, VERSION))
    time.sleep(seconds)
    verdict = probe.stop()
    return dict(verdict.values)


def sustained(figures: dict[str, float]) -> bool:
    """Every scheduled request sent and recorded at the offered rate, none failed."""
    return (
        figures["failed_requests"] == 0
        and figures["achieved_rps"] >= 0.97 * figures["offered_rps"]
        and figures["requests"] >= 0.97 * figures["offered_rps"] * figures["duration_s"] * 0.95
    )


def measure(seconds: float = 6.0, replicas: int = 3) -> dict[str, Any]:
    """wrk's throughput and the probe's highest sustained rate on one fresh stack."""
    manager = get_plugin_manager()
    state_dir = Path(tempfile.mkdtemp(prefix="zdu-bench-capacity-"))
    database = state_dir / "gitlab.sqlite"
    create_database(database, VERSION)
    raw = {
        "target": {"name": "capacity", "platform": "local", "version": str(VERSION)},
        "platform": {
            "replicas": replicas,
            "command": demo_app_command(0.2, "--database", str(database)),
            "retry": False,
        },
        "release": {"version": "16.7.0"},
        "strategy": {"name": "rolling"},
        "upgrade": {"state_dir": str(state_dir)},
    }
    config = load_config(raw, manager)
    platform = LocalPlatform(config.platform.options, PlatformEnv(config.target, config.target_state_dir))
    rates: list[tuple[float, dict[str, float], bool]] = []
    try:
        url = platform.up(VERSION)
        wrk_throughput(url, 2, 16)  # warm up
        wrk = wrk_throughput(url, seconds, 32)
        wrk_close = wrk_throughput(url, seconds, 32, close=True)
        # double the rate until it is not sustained, then bisect between the last two
        low, high, rate = 0.0, 0.0, 500.0
        while True:
            figures = probe_at(url, config, rate, seconds)
            ok = sustained(figures)
            rates.append((rate, figures, ok))
            print(
                f"probe at {rate:.0f}/s: achieved {figures['achieved_rps']:.0f}/s, "
                f"{figures['requests']:.0f} recorded, {figures['failed_requests']:.0f} failed, "
                f"p99 {figures['p99_ms']:.1f} ms -> {'sustained' if ok else 'not sustained'}",
                flush=True,
            )
            if ok:
                low = rate
            else:
                high = rate
            if not high:
                rate *= 2
            elif high - low <= max(100.0, low * 0.1):
                break
            else:
                rate = (low + high) / 2
    finally:
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    capacity = max((rate for rate, _, ok in rates if ok), default=0.0)
    return {
        "wrk_rps": wrk,
        "wrk_close_rps": wrk_close,
        "capacity_rps": capacity,
        "rates": rates,
        "replicas": replicas,
    }


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown lines of the result."""
    lines = [
        "| offered (probe, open loop) | achieved | recorded | failed | p99 | sustained |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rate, figures, ok in result["rates"]:
        lines.append(
            f"| {rate:.0f}/s | {figures['achieved_rps']:.0f}/s | {figures['requests']:.0f} "
            f"| {figures['failed_requests']:.0f} | {figures['p99_ms']:.1f} ms | {'yes' if ok else 'no'} |"
        )
    ratio = result["capacity_rps"] / result["wrk_rps"] if result["wrk_rps"] else 0.0
    lines += [
        "",
        f"wrk (closed loop, 32 connections kept alive) on the same stack: {result['wrk_rps']:.0f} "
        f"requests/s ({result['wrk_close_rps']:.0f} with a connection per request, as the probe opens "
        f"them). The probe's capacity: {result['capacity_rps']:.0f} requests/s, {ratio:.2f}x wrk "
        "(kept alive).",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--replicas", type=int, default=3)
    arguments = parser.parse_args()
    print("\n".join(table(measure(arguments.seconds, arguments.replicas))))


if __name__ == "__main__":
    main()
