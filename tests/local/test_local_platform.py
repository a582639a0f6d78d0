"""The local platform: a fleet of real processes behind a real nginx, driven through the Platform protocol."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import cattrs
import psutil
import pytest

import zdu_local.platform
from tests.local import ws_app
from tests.local.conftest import get
from zdu.errors import PlatformError, ReadinessTimeout
from zdu.model import Version
from zdu.platform import Platform, PlatformEnv
from zdu_local.config import DEFAULT_COMMAND, LocalPlatformConfig
from zdu_local.platform import LocalPlatform

Get = Callable[..., tuple[int, dict[str, str], bytes]]
Make = Callable[..., LocalPlatform]
OLD = Version.parse("16.5.0")
NEW = Version.parse("16.6.0")


def fleet_pids(platform: LocalPlatform) -> set[int]:
    """Every process of the fleet: instances, nginx's master and workers."""
    pids = {record.pid for record in platform.state.instances}
    master = platform.router.master_pid()
    if master is not None:
        pids.add(master)
        pids.update(child.pid for child in psutil.Process(master).children())
    return pids


def test_up_and_down_leave_no_process(
    make_platform: Make, http_get: Get, alive: Callable[[int], bool]
) -> None:
    platform = make_platform()
    assert isinstance(platform, Platform)
    assert not platform.is_up()
    url = platform.up(OLD)
    assert platform.is_up()
    status, headers, _ = http_get(url + "/")
    assert (status, headers["X-Demo-Version"]) == (200, "16.5.0")
    (group,) = platform.groups()
    assert (group.name, group.version, group.replicas, group.ready, group.routed) == ("v16-5-0", OLD, 3, 3, 3)
    pids = fleet_pids(platform)
    assert len(pids) == 3 + 2  # instances, nginx master and worker
    assert (platform.state_dir / "state.json").exists()

    platform.down()
    assert not [pid for pid in pids if alive(pid)]
    assert not platform.is_up()
    assert not (platform.state_dir / "state.json").exists()
    assert platform.groups() == []
    platform.down()  # idempotent


def test_up_is_idempotent(make_platform: Make) -> None:
    platform = make_platform(replicas=2)
    url = platform.up(OLD)
    pids = fleet_pids(platform)
    assert platform.up(OLD) == url
    assert fleet_pids(platform) == pids


def test_a_second_platform_adopts_the_running_fleet(
    make_platform: Make, env: PlatformEnv, http_get: Get
) -> None:
    first = make_platform(replicas=2)
    url = first.up(OLD)
    second = LocalPlatform(LocalPlatformConfig(replicas=2), env)
    assert second.is_up()
    assert second.router.url == url
    assert second.groups() == first.groups()
    assert second.router.master_pid() == first.router.master_pid()
    second.scale(second.group_name(NEW), NEW, 1)
    second.router.set_weights({second.group_name(NEW): 1})
    assert http_get(url + "/")[1]["X-Demo-Version"] == "16.6.0"
    assert [g.name for g in first.groups()] == ["v16-5-0", "v16-6-0"]  # each reads what the other saved
    assert first.router.weights() == {"v16-5-0": 0, "v16-6-0": 1}
    pids = fleet_pids(second)
    second.down()
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_never_ready_instances_are_never_routed(make_platform: Make, http_get: Get) -> None:
    command = [*DEFAULT_COMMAND, "--fault", "never-ready", "--fault-version", "16.6.0"]
    platform = make_platform(replicas=1, command=command, ready_timeout=1.5)
    url = platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    platform.router.set_weights({old: 1, new: 1000})  # it would take all traffic, were it ready
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(http_get(url + "/")[1]["X-Demo-Version"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(ReadinessTimeout) as raised:
            platform.scale(new, NEW, 2)
    finally:
        stop.set()
        watcher.join()
    message = str(raised.value)
    assert re.search(r"instance v16-6-0-\d+ of version 16.6.0 did not become ready within 1.5s", message)
    assert "gave status 503" in message and "demo app 16.6.0 listening" in message  # its log lines
    assert seen == {"16.5.0"}
    assert [g.name for g in platform.groups()] == [old]
    assert not [r for r in platform.state.instances if r.group == new]
    assert not [p for p in psutil.Process().children() if "--version 16.6.0" in " ".join(_cmdline(p))]


def test_an_instance_that_exits_fails_fast(make_platform: Make) -> None:
    command = [sys.executable, "-c", "import sys; print('cannot start: no database'); sys.exit(3)"]
    platform = make_platform(replicas=1, command=command, ready_timeout=20)
    started = time.monotonic()
    with pytest.raises(ReadinessTimeout, match=r"(?s)exited before it became ready.*no database"):
        platform.up(OLD)
    assert time.monotonic() - started < 10
    assert not platform.router.running()


def test_scale_down_under_traffic_fails_no_request(make_platform: Make, traffic: Callable[..., Any]) -> None:
    command = [*DEFAULT_COMMAND, "--request-delay-ms", "30"]
    platform = make_platform(replicas=3, command=command)
    url = platform.up(OLD)
    group = platform.group_name(OLD)
    with traffic(url, threads=4, duration=3.0) as load:
        time.sleep(0.4)
        platform.scale(group, OLD, 1)
        platform.scale(group, OLD, 3)
        platform.scale(group, OLD, 2)
        load.wait()
    assert load.requests > 100, load.results
    assert load.failed == 0, (load.results, load.errors)
    assert [i.id for i in platform.groups()[0].instances] == ["v16-5-0-1", "v16-5-0-4"]


def test_killing_instances_without_draining_fails_requests(
    make_platform: Make, traffic: Callable[..., Any]
) -> None:
    """The same traffic loop does see failures when instances go away abruptly: the check can fail."""
    command = [*DEFAULT_COMMAND, "--request-delay-ms", "30"]
    platform = make_platform(replicas=3, command=command)
    url = platform.up(OLD)
    with traffic(url, threads=4, duration=1.5) as load:
        time.sleep(0.4)
        for record in platform.state.instances:
            os.kill(record.pid, signal.SIGKILL)
        load.wait()
    assert load.failed > 0, load.results
    assert load.results["ok"] > 0


def test_a_slow_request_finishes_while_its_instance_drains(make_platform: Make, http_get: Get) -> None:
    command = [*DEFAULT_COMMAND, "--request-delay-ms", "1500"]
    platform = make_platform(replicas=1, command=command, stop_grace=0.2)
    url = platform.up(OLD)
    answers: list[int] = []
    client = threading.Thread(target=lambda: answers.append(http_get(url + "/", timeout=10)[0]))
    client.start()
    time.sleep(0.3)
    started = time.monotonic()
    platform.scale(platform.group_name(OLD), OLD, 0)
    assert time.monotonic() - started > 0.9  # it waited for the request in flight
    client.join(timeout=10)
    assert answers == [200]
    assert platform.state.instances == ()
    assert http_get(url + "/")[0] == 503  # nothing is routable any more


def test_check_health_reports_a_killed_instance(make_platform: Make) -> None:
    platform = make_platform(replicas=2)
    platform.up(OLD)
    assert platform.check_health() == []
    victim = platform.state.instances[0]
    os.kill(victim.pid, signal.SIGKILL)
    time.sleep(0.2)
    (problem,) = platform.check_health()
    assert f"instance {victim.id} (16.5.0, {victim.address}) is not running" in problem
    instances = {i.id: i for i in platform.groups()[0].instances}
    assert not instances[victim.id].alive and not instances[victim.id].ready
    # Scaling replaces the dead instance.
    group = platform.scale(platform.group_name(OLD), OLD, 2)
    assert group.ready == 2 and victim.id not in {i.id for i in group.instances}
    assert platform.check_health() == []


def test_check_health_reports_an_instance_that_stops_answering(make_platform: Make) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    frozen = platform.state.instances[0]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        (problem,) = platform.check_health()
        assert f"instance {frozen.id}" in problem and "stopped being ready" in problem
    finally:
        os.kill(frozen.pid, signal.SIGCONT)


def test_check_health_reports_a_stopped_router(make_platform: Make, alive: Callable[[int], bool]) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    master = platform.router.master_pid()
    assert master is not None
    os.kill(master, signal.SIGQUIT)
    deadline = time.monotonic() + 5
    while alive(master) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any("router (nginx" in problem for problem in platform.check_health())
    assert not platform.is_up()


def test_scaling_a_fleet_that_is_not_up_is_refused(make_platform: Make) -> None:
    platform = make_platform()
    with pytest.raises(PlatformError, match="is not up: run 'zdu local up' first"):
        platform.scale(platform.group_name(OLD), OLD, 1)
    assert platform.state.instances == ()


def test_a_bad_group_name_is_refused(make_platform: Make) -> None:
    platform = make_platform(replicas=1)
    platform.up(OLD)
    with pytest.raises(PlatformError, match=r"group name '\.\./x' is not valid"):
        platform.scale("../x", OLD, 1)


def test_groups_are_ordered_oldest_version_first(make_platform: Make) -> None:
    platform = make_platform(replicas=1)
    platform.up(NEW)
    platform.scale(platform.group_name(OLD), OLD, 1)
    assert [g.version for g in platform.groups()] == [OLD, NEW]
    with pytest.raises(PlatformError, match=r"runs version 16\.5\.0, not 16\.6\.0"):
        platform.scale(platform.group_name(OLD), NEW, 1)
    platform.remove_group(platform.group_name(OLD))
    platform.remove_group(platform.group_name(OLD))  # idempotent
    assert [g.version for g in platform.groups()] == [NEW]


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("16.6.0", "v16-6-0"),
        ("v16.6.0", "v16-6-0"),
        ("16.6.0-rc42", "v16-6-0-rc42"),
        ("16.5.1-ee.0", "v16-5-1-ee-0"),
        ("16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a", "v16-6-202310241220-a1b2c3d4e5f-f9e8d7c6b5a"),
    ],
)
def test_group_names(make_platform: Make, version: str, name: str) -> None:
    assert make_platform().group_name(Version.parse(version)) == name


def test_group_name_of_a_long_auto_deploy_version_is_short_and_stable(make_platform: Make) -> None:
    platform = make_platform()
    version = Version.parse("16.6.202310241220-" + "a" * 40 + "." + "b" * 40)
    name = platform.group_name(version)
    assert len(name) <= 63 and re.fullmatch(r"v[a-z0-9-]*[a-z0-9]", name)
    assert name == platform.group_name(Version.parse(str(version)))
    other = Version.parse("16.6.202310241220-" + "a" * 40 + "." + "c" * 40)
    assert platform.group_name(other) != name


def test_missing_nginx_is_a_clear_error(make_platform: Make) -> None:
    platform = make_platform(nginx="nginx-that-is-not-installed")
    with pytest.raises(PlatformError) as raised:
        platform.up(OLD)
    assert str(raised.value) == (
        "nginx not found (looked for 'nginx-that-is-not-installed' on PATH and in /usr/sbin): "
        "install it (apt-get install nginx-light) or set platform.nginx"
    )
    assert platform.state.instances == ()


def test_config_is_structured_and_validated() -> None:
    config = cattrs.structure(
        {"replicas": 2, "env": {"A": "1"}, "listen": "127.0.0.1:8080"}, LocalPlatformConfig
    )
    assert (config.replicas, config.env, config.listen, config.ready_timeout) == (
        2,
        {"A": "1"},
        "127.0.0.1:8080",
        30.0,
    )
    assert config.command_for("16.6.0", 1234)[-4:] == ["--version", "16.6.0", "--port", "1234"]
    with pytest.raises(ValueError, match="replicas must be at least 1, got 0"):
        LocalPlatformConfig(replicas=0)
    with pytest.raises(ValueError, match="listen: 'nowhere' is not HOST:PORT"):
        LocalPlatformConfig(listen="nowhere")
    with pytest.raises(ValueError, match="has a bad placeholder"):
        LocalPlatformConfig(command=["app", "--release={release}"])


def _cmdline(process: psutil.Process) -> list[str]:
    """A child's command line; a zombie (exited, not yet reaped) has none and runs nothing."""
    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


def test_stopped_while_still_routed_fails_requests_that_draining_does_not(
    make_platform: Make, traffic: Callable[..., Any]
) -> None:
    """drain=false, the negative control: the same traffic loop sees failures draining prevents."""
    command = [*DEFAULT_COMMAND, "--request-delay-ms", "30"]
    platform = make_platform(replicas=3, command=command)
    url = platform.up(OLD)
    group = platform.group_name(OLD)
    with traffic(url, threads=4, duration=2.0) as drained:
        time.sleep(0.4)
        platform.scale(group, OLD, 2)
        drained.wait()
    undrained_platform = make_platform(replicas=3, command=command, drain=False)
    with traffic(url, threads=4, duration=2.0) as undrained:
        time.sleep(0.4)
        undrained_platform.scale(group, OLD, 1)
        undrained.wait()
    assert drained.requests > 20 and undrained.requests > 20, (drained.results, undrained.results)
    assert drained.failed == 0, (drained.results, drained.errors)
    assert undrained.failed > 0, undrained.results
    assert [i.id for i in platform.groups()[0].instances] == ["v16-5-0-1"]


def test_drain_waits_for_a_long_request_in_flight(make_platform: Make, http_get: Get) -> None:
    # stop_grace 0.2 s: an instance stopped before its request ended would be killed with it
    platform = make_platform(replicas=1, command=ws_app.command(), stop_grace=0.2, drain_timeout=20)
    url = platform.up(OLD)
    (record,) = platform.state.instances
    answers: list[tuple[int, float]] = []

    def slow() -> None:
        status = http_get(url + "/slow?seconds=1.5", timeout=20)[0]
        answers.append((status, time.monotonic()))

    client = threading.Thread(target=slow)
    client.start()
    deadline = time.monotonic() + 5
    while (
        http_get(f"http://{record.address}/-/inflight")[2]
        != b'{"requests": 1, "streams": 0, "websockets": 0}'
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    platform.scale(platform.group_name(OLD), OLD, 0)
    stopped = time.monotonic()
    client.join(timeout=20)
    assert answers and answers[0][0] == 200
    assert answers[0][1] <= stopped  # answered before the instance was stopped
    assert platform.state.instances == ()


def _drain_holding_a_websocket(platform: LocalPlatform) -> tuple[float, ws_app.HeldSocket]:
    url = platform.up(OLD)
    socket = ws_app.HeldSocket(url + "/-/cable")
    socket.start()
    assert socket.connected.wait(10) and socket.error is None, socket.error
    assert "16.5.0" in socket.echo  # its echo (or the demo app's welcome) came from the instance
    started = time.monotonic()
    platform.scale(platform.group_name(OLD), OLD, 0)
    took = time.monotonic() - started
    socket.join(timeout=10)
    return took, socket


@pytest.mark.parametrize("app", ["ws_app", "demo_app"])
def test_an_instance_holding_only_a_websocket_is_stopped_without_waiting_for_it(
    make_platform: Make, app: str
) -> None:
    command = ws_app.command() if app == "ws_app" else list(DEFAULT_COMMAND)
    platform = make_platform(replicas=1, command=command, drain_timeout=20)
    took, socket = _drain_holding_a_websocket(platform)
    assert took < 10, took  # well before drain_timeout: the instance answered 0 requests in flight
    assert socket.close_code == 1001  # the app's SIGTERM closed it with a close frame
    assert platform.state.instances == ()


def test_without_an_inflight_endpoint_the_websocket_holds_the_drain(make_platform: Make) -> None:
    """The control of the test above: counting connections, the websocket holds the drain to its end."""
    platform = make_platform(replicas=1, command=ws_app.command("--no-inflight"), drain_timeout=2)
    took, socket = _drain_holding_a_websocket(platform)
    assert took >= 2, took
    assert socket.close_code == 1001


def test_scale_groups_starts_the_new_while_the_old_leave_and_routes_it_only_after(
    make_platform: Callable[..., LocalPlatform], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch of ``rolling``: spawn the new instance, take the old one out, drain it while the new starts.

    The old instance is busy with a 3 s download when the batch begins, so its drain outlasts the new
    instance's start: the new one must turn ready (and be routed) before the old one is stopped, and
    must not be routed while the old one still is.
    """
    platform = make_platform(replicas=2, command=[*DEFAULT_COMMAND, "--startup-delay", "0.5"])
    url = platform.up(OLD)
    old, new = platform.group_name(OLD), platform.group_name(NEW)
    platform.router.set_weights({old: 1, new: 1})
    events: list[tuple[str, object]] = []
    save = platform.router._save

    def recording_save(record: Any) -> None:
        save(record)
        events.append(("routed", set(platform.router.record.routed)))

    monkeypatch.setattr(platform.router, "_save", recording_save)
    leaving = max(platform.state.instances, key=lambda r: r.serial)  # scaling down drains the newest
    stream = f"http://{leaving.address}/-/stream?seconds=3"
    download = threading.Thread(target=get, args=(stream, 10.0))
    download.start()
    time.sleep(0.3)
    stop_processes, spawn = zdu_local.platform.stop_processes, zdu_local.platform.spawn

    def recording_stop(identities: Any, grace: float) -> None:
        events.append(("stopped", {identity.pid for identity in identities}))
        stop_processes(identities, grace)

    def recording_spawn(*args: Any, **kwargs: Any) -> Any:
        events.append(("spawned", None))
        return spawn(*args, **kwargs)

    monkeypatch.setattr(zdu_local.platform, "stop_processes", recording_stop)
    monkeypatch.setattr(zdu_local.platform, "spawn", recording_spawn)
    platform.scale_groups([(new, NEW, 1), (old, OLD, 1)])
    download.join()
    (joined,) = [r for r in platform.state.instances if r.group == new]
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "spawned", events  # the new instance starts before anything else happens
    left = next(i for i, (kind, ids) in enumerate(events) if kind == "routed" and leaving.id not in ids)  # type: ignore[operator]
    routed_new = next(i for i, (kind, ids) in enumerate(events) if kind == "routed" and joined.id in ids)  # type: ignore[operator]
    stopped = next(i for i, (kind, pids) in enumerate(events) if kind == "stopped" and leaving.pid in pids)  # type: ignore[operator]
    assert left < routed_new < stopped, events  # out, then in, and the drain overlapped the start
    assert get(url + "/")[0] == 200
