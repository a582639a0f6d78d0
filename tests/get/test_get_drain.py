"""The get platform's drain and the local fleet's HAProxy: no retry, websockets through, not waited for.

Real HAProxy in front of small aiohttp nodes (``tests/local/ws_app.py``) that count their requests in
flight at ``/-/inflight`` and hold websockets at ``/-/cable``.
"""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.get.conftest import requires_haproxy
from tests.local import ws_app
from zdu.errors import PlatformError
from zdu.model import Target
from zdu.network import free_port, http_status
from zdu.platform import PlatformEnv
from zdu.processes import ProcessIdentity, spawn, stop_processes
from zdu_get.config import GetPlatformConfig
from zdu_get.fleet import LocalGetFleet, haproxy_config
from zdu_get.platform import GetPlatform

pytestmark = requires_haproxy


class Nodes:
    """``ws_app`` nodes behind the local fleet's HAProxy, and a get platform on them."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.fleet = LocalGetFleet(directory, rails=("rails-1", "rails-2"))
        self.fleet.write_inventory("16.5.0")  # the platform maps nodes to servers through it
        self.processes: dict[str, ProcessIdentity] = {}
        self.addresses: dict[str, str] = {}
        for node in self.fleet.rails:
            port = free_port("127.0.0.1")
            values = {"port": str(port), "host": "127.0.0.1", "version": "16.5.0"}
            command = [argument.format(**values) for argument in ws_app.command(*options)]
            self.processes[node] = spawn(command, {}, directory / "logs" / f"{node}.log")
            self.addresses[node] = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 15
            while http_status("127.0.0.1", port, "/-/readiness") != 200:
                assert time.monotonic() < deadline, f"{node} did not start"
                time.sleep(0.05)
        self.fleet.start_haproxy(self.addresses)

    def platform(self, **options: Any) -> GetPlatform:
        """A get platform on this fleet (its Ansible side unused)."""
        config = GetPlatformConfig(**self.fleet.platform_options(**options))
        target = Target(name="drain", platform="get", version="16.5.0")
        return GetPlatform(config, PlatformEnv(target=target, state_dir=self.fleet.directory / "state"))

    def stop(self, node: str) -> None:
        """SIGTERM the node (SIGKILL after 10 s), as :mod:`zdu_get.node` stops a node's app."""
        stop_processes([self.processes[node]], 10.0)

    def close(self) -> None:
        self.fleet.down()
        stop_processes(list(self.processes.values()), 5.0)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Any]:
    started: list[Nodes] = []

    def start(*options: str) -> Nodes:
        started.append(Nodes(tmp_path / f"fleet{len(started)}", *options))
        return started[-1]

    yield start
    for fleet in started:
        fleet.close()


def test_haproxy_config_has_no_retry_and_passes_haproxy_check(tmp_path: Path) -> None:
    text = haproxy_config(tmp_path / "haproxy.sock", 8080, {"rails-1": "127.0.0.1:9001"})
    assert "retries 0" in text and "timeout tunnel" in text
    assert "option redispatch" not in text.replace("no 'option redispatch'", "")
    assert "    server rails-1 127.0.0.1:9001 check" in text
    (tmp_path / "haproxy.cfg").write_text(text)
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert LocalGetFleet(tmp_path).retries is False


def test_a_drained_node_holding_only_a_websocket_is_done_at_once(nodes: Any) -> None:
    fleet = nodes()
    platform = fleet.platform(drain_timeout=20.0)
    socket = ws_app.HeldSocket(fleet.fleet.url + "/-/cable")
    socket.start()
    assert socket.connected.wait(10) and socket.error is None, socket.error
    node = next(name for name in fleet.addresses if platform.server(name).sessions == 1)
    platform.runtime.set_state("gitlab_rails", node, "drain")
    started = time.monotonic()
    server = platform.wait_drained(node)
    took = time.monotonic() - started
    assert server.sessions == 1  # HAProxy still holds the websocket ...
    assert took < 10, took  # ... yet the drain did not wait for it (drain_timeout 20 s)
    fleet.stop(node)
    socket.join(timeout=15)
    assert socket.close_code == 1001  # closed cleanly by the node's SIGTERM, through HAProxy


def test_without_the_inflight_count_a_websocket_holds_the_drain(nodes: Any) -> None:
    """The control of the test above: by HAProxy's sessions alone, the websocket holds the drain."""
    fleet = nodes()
    platform = fleet.platform(drain_timeout=2.0, inflight_path="")
    socket = ws_app.HeldSocket(fleet.fleet.url + "/-/cable")
    socket.start()
    assert socket.connected.wait(10) and socket.error is None, socket.error
    node = next(name for name in fleet.addresses if platform.server(name).sessions == 1)
    platform.runtime.set_state("gitlab_rails", node, "drain")
    with pytest.raises(PlatformError, match=r"sessions reaching 0 did not happen within 2s"):
        platform.wait_drained(node)
    fleet.stop(node)
    socket.join(timeout=15)
    assert socket.close_code == 1001


def test_a_drained_node_with_a_long_request_is_waited_for(nodes: Any) -> None:
    fleet = nodes()
    platform = fleet.platform(drain_timeout=20.0)
    answers: list[tuple[int, float]] = []

    def slow() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", fleet.fleet.port, timeout=20)
        try:
            connection.request("GET", "/slow?seconds=1.5")
            response = connection.getresponse()
            response.read()
            answers.append((response.status, time.monotonic()))
        finally:
            connection.close()

    client = threading.Thread(target=slow)
    sent = time.monotonic()
    client.start()
    deadline = time.monotonic() + 5
    busy = []
    while not busy:
        assert time.monotonic() < deadline, "the slow request reached no node"
        busy = [name for name in fleet.addresses if platform.node_inflight(platform.server(name)) == 1]
        time.sleep(0.02)
    (node,) = busy
    platform.runtime.set_state("gitlab_rails", node, "drain")
    platform.wait_drained(node)
    drained = time.monotonic()
    client.join(timeout=20)
    assert answers and answers[0][0] == 200
    assert drained - sent >= 1.0  # the drain lasted as long as the 1.5 s request, not less
    assert answers[0][1] - drained < 5.0  # and ended with it
    assert platform.node_inflight(platform.server(node)) == 0
