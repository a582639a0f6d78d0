"""HAProxy's own upgrade on the get platform's fleet: a seamless reload beside a restart that loses some.

The http probe (pages with assets, API reads, writes read back, long downloads, websockets held for
the whole run) and wrk send traffic through the local GET-like fleet's HAProxy while
:meth:`LocalGetFleet.reload_haproxy` replaces the process by another binary (``-x`` takes the listening
sockets over the stats socket, ``-sf`` retires the old process, which finishes what it holds); then,
as the negative control in the same test, HAProxy is stopped and started again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import psutil

from tests.get.conftest import FROM, requires_haproxy
from zdu.model import Release, Target, Version
from zdu.probe import ProbeContext
from zdu_demo.crosscheck import IndependentLoad, find_wrk
from zdu_get.haproxy import HAProxyRuntime
from zdu_probes.http import HttpProbe, HttpProbeConfig

pytestmark = requires_haproxy

PROBE = HttpProbeConfig(
    rps=50,
    clients=6,
    streams=3,
    stream_seconds=2.0,
    sockets=4,
    max_failed_requests=None,
    max_cut_streams=None,
    max_dropped_sockets=None,
    max_asset_errors=None,
    max_lost_writes=None,
)


def _run_traffic(url: str, change: Any) -> tuple[dict[str, float], int, int]:
    """Probe and wrk through ``url`` for 2 s, ``change()``, 3 s more; probe figures, wrk requests, failed."""
    probe = HttpProbe(PROBE)
    target = Target(name="get-router", platform="get", version=FROM)
    probe.start(ProbeContext(url, target, Release(version=FROM), Version.parse(FROM)))
    try:
        with IndependentLoad(url, connections=2, delay_ms=50) as load:
            time.sleep(2.0)
            change()
            time.sleep(3.0)
    finally:
        verdict = probe.stop()
    assert load.result is not None
    return dict(verdict.values), load.result.requests, load.result.failed


def test_haproxy_seamless_reload_loses_nothing_and_a_restart_does(make_fleet: Any, tmp_path: Path) -> None:
    find_wrk()
    installed = shutil.which("haproxy") or "/usr/sbin/haproxy"
    newer = tmp_path / "haproxy-new" / "haproxy"
    newer.parent.mkdir()
    shutil.copy2(installed, newer)
    fleet = make_fleet()
    runtime = HAProxyRuntime(fleet.socket)
    # a server zdu drained stays drained across the reload (its state is carried over)
    runtime.set_state("gitlab_rails", "rails-3", "drain")
    reloads = []

    safe, safe_wrk, safe_wrk_failed = _run_traffic(
        fleet.url, lambda: reloads.append(fleet.reload_haproxy(str(newer)))
    )

    (result,) = reloads
    assert fleet.haproxy == result.new and result.new.pid != result.old.pid
    assert psutil.Process(result.new.pid).exe() == str(newer)
    assert runtime.server("gitlab_rails", "rails-3").draining
    assert result.held_connections > 0  # downloads and websockets the old process finished
    deadline = time.monotonic() + 15
    while result.old.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not result.old.alive(), "the old HAProxy did not exit once its connections ended"
    runtime.set_state("gitlab_rails", "rails-3", "ready")

    def restart() -> None:
        fleet.stop_haproxy()
        fleet.start_haproxy(fleet_servers)

    fleet_servers = {s.name: s.address for s in runtime.servers("gitlab_rails")}
    control, control_wrk, control_wrk_failed = _run_traffic(fleet.url, restart)

    print(
        f"\nhaproxy reload: probe {safe['requests']:.0f} requests, {safe['failed_requests']:.0f} failed, "
        f"{safe['streams']:.0f} streams ({safe['cut_streams']:.0f} cut), {safe['sockets']:.0f} websockets "
        f"({safe['dropped_sockets']:.0f} dropped), {safe['lost_writes']:.0f} lost writes; wrk {safe_wrk} "
        f"requests, {safe_wrk_failed} failed\nstop and start: probe {control['requests']:.0f} requests, "
        f"{control['failed_requests']:.0f} failed, {control['streams']:.0f} streams "
        f"({control['cut_streams']:.0f} cut), {control['sockets']:.0f} websockets "
        f"({control['dropped_sockets']:.0f} dropped); wrk {control_wrk} requests, {control_wrk_failed} failed"
    )
    assert safe["requests"] > 150 and safe["streams"] >= 4 and safe["sockets"] >= PROBE.sockets, safe
    assert safe["failed_requests"] == 0 and safe["lost_writes"] == 0, safe
    assert safe["cut_streams"] == 0 and safe["dropped_sockets"] == 0, safe
    assert safe_wrk > 50 and safe_wrk_failed == 0
    # the control, seen by the same instruments
    assert control["failed_requests"] > 0, control
    assert control["dropped_sockets"] + control["cut_streams"] > 0, control
    assert control_wrk_failed > 0
