"""The router's own upgrade: a new nginx binary under traffic, beside a stop-and-start that loses some.

One test, one instrument, two ways to replace nginx: the http probe (pages with their assets, API
reads, long downloads, websockets held for the whole run) and wrk as a second instrument send traffic
through the router while :meth:`NginxRouter.upgrade` replaces the master by another binary (USR2,
WINCH, QUIT); then, as the negative control, nginx is stopped and started again. The first must lose
nothing, the second must lose requests and websockets: the same probe sees both.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from zdu.errors import PlatformError
from zdu.model import Release, Target, Version
from zdu.probe import ProbeContext
from zdu_demo.crosscheck import IndependentLoad, find_wrk
from zdu_local.nginx import find_nginx
from zdu_local.platform import LocalPlatform
from zdu_probes.http import HttpProbe, HttpProbeConfig

OLD = Version.parse("16.5.0")

#: Pages (with assets) and API reads; long downloads and websockets come on top. No writes: the
#: instances keep them in memory each, and routing is what is measured here.
PROBE = HttpProbeConfig(
    rps=60,
    mix={"page": 0.6, "api": 0.4, "write": 0.0},
    clients=8,
    streams=3,
    stream_seconds=2.0,
    sockets=4,
    max_failed_requests=None,
    max_cut_streams=None,
    max_dropped_sockets=None,
)


def _binaries(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the installed nginx, as two releases of it would be: different files."""
    installed = find_nginx("nginx")
    copies = []
    for name in ("nginx-a", "nginx-b"):
        directory = tmp_path / name
        directory.mkdir()
        copy = directory / "nginx"
        shutil.copy2(installed, copy)
        copies.append(copy)
    return copies[0], copies[1]


def _run_traffic(url: str, change: Callable[[], None]) -> tuple[dict[str, float], int, int]:
    """Probe and wrk through ``url`` for 2 s, ``change()``, 3 s more; probe figures, wrk requests, failed."""
    probe = HttpProbe(PROBE)
    target = Target(name="router", platform="local", version=str(OLD))
    probe.start(ProbeContext(url, target, Release(version=str(OLD)), OLD))
    try:
        with IndependentLoad(url, connections=2, delay_ms=50, write_every=0) as load:
            time.sleep(2.0)
            change()
            time.sleep(3.0)
    finally:
        verdict = probe.stop()
    assert load.result is not None
    return dict(verdict.values), load.result.requests, load.result.failed


def test_router_upgrade_loses_nothing_and_a_restart_does(
    make_platform: Callable[..., LocalPlatform], tmp_path: Path
) -> None:
    find_wrk()
    first, second = _binaries(tmp_path)
    platform = make_platform(replicas=2, nginx=str(first))
    url = platform.up(OLD)
    router = platform.router
    before = router.master_pid()
    upgrades = []

    safe, safe_wrk, safe_wrk_failed = _run_traffic(url, lambda: upgrades.append(router.upgrade(str(second))))

    (result,) = upgrades
    assert result.old.pid == before and result.new.pid == router.master_pid() != before
    assert platform.state.router is not None and platform.state.router.master_pid == result.new.pid
    assert psutil.Process(result.new.pid).exe() == str(second.resolve())
    # the old workers held connections (downloads, websockets) when QUIT was sent, and the old master
    # exits once they are gone (the probe closed its websockets at stop)
    assert result.held_connections > 0
    deadline = time.monotonic() + 15
    while result.old.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not result.old.alive()
    assert not router.nginx.old_pid_path.exists()

    def restart() -> None:
        router.nginx.stop(None, timeout=1.0)
        router.start()

    control, control_wrk, control_wrk_failed = _run_traffic(url, restart)

    print(
        f"\nrouter-upgrade: probe {safe['requests']:.0f} requests, {safe['failed_requests']:.0f} failed, "
        f"{safe['streams']:.0f} streams ({safe['cut_streams']:.0f} cut), {safe['sockets']:.0f} websockets "
        f"({safe['dropped_sockets']:.0f} dropped); wrk {safe_wrk} requests, {safe_wrk_failed} failed"
        f"\nstop and start: probe {control['requests']:.0f} requests, {control['failed_requests']:.0f} "
        f"failed, {control['streams']:.0f} streams ({control['cut_streams']:.0f} cut), "
        f"{control['sockets']:.0f} websockets ({control['dropped_sockets']:.0f} dropped); wrk "
        f"{control_wrk} requests, {control_wrk_failed} failed"
    )
    # the safe path: nothing lost, by either instrument, with downloads and websockets in flight
    assert safe["requests"] > 200 and safe["streams"] >= 4 and safe["sockets"] >= PROBE.sockets, safe
    assert safe["failed_requests"] == 0, safe
    assert safe["cut_streams"] == 0 and safe["dropped_sockets"] == 0, safe
    assert safe_wrk > 50 and safe_wrk_failed == 0
    # the control, seen by the same instruments: requests refused while nothing listens, websockets cut
    assert control["failed_requests"] > 0, control
    assert control["dropped_sockets"] > 0, control
    assert control_wrk_failed > 0


def test_router_upgrade_refuses_a_binary_that_rejects_the_configuration(
    make_platform: Callable[..., LocalPlatform], tmp_path: Path
) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    master = platform.router.master_pid()
    fake = tmp_path / "nginx"
    fake.write_text("#!/bin/sh\necho 'nginx: [emerg] unknown directive' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(PlatformError, match="refuses the running configuration"):
        platform.router.upgrade(str(fake))
    assert platform.router.master_pid() == master
    assert platform.router.nginx.launcher.resolve() != fake.resolve()
