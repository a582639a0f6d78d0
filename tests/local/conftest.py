"""Fixtures for the local platform's tests: real processes, a real nginx, real HTTP on loopback."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from zdu.model import Target
from zdu.platform import PlatformEnv
from zdu_local.config import LocalPlatformConfig
from zdu_local.platform import LocalPlatform


def _descendants() -> list[psutil.Process]:
    alive = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _nginx_under(path: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "nginx" in cmdline and str(path) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path: Path) -> Iterator[None]:
    """Fail a test that leaves a process behind (an instance, an nginx), after killing it."""
    before = {p.pid for p in _descendants()}
    yield
    deadline = time.monotonic() + 3.0
    while True:
        leftovers = [p for p in _descendants() if p.pid not in before] + _nginx_under(tmp_path)
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for process in leftovers:
        process.kill()
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"


@pytest.fixture
def env(tmp_path: Path) -> PlatformEnv:
    """A target and its state directory."""
    return PlatformEnv(
        target=Target(name="test", platform="local", version="16.5.0"), state_dir=tmp_path / "state"
    )


@pytest.fixture
def make_platform(env: PlatformEnv) -> Iterator[Callable[..., LocalPlatform]]:
    """Build LocalPlatforms on the test's state directory; every fleet is brought down afterwards."""
    platforms: list[LocalPlatform] = []

    def make(**config: Any) -> LocalPlatform:
        config.setdefault("ready_timeout", 10.0)
        config.setdefault("drain_timeout", 10.0)
        config.setdefault("stop_grace", 5.0)
        platform = LocalPlatform(LocalPlatformConfig(**config), env)
        platforms.append(platform)
        return platform

    yield make
    for platform in reversed(platforms):
        platform.down()


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` (http://host:port/path) on a new connection: status, headers, body."""
    rest = url.removeprefix("http://")
    address, _, path = rest.partition("/")
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", "/" + path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


class Traffic:
    """Client threads sending requests through a URL in a bounded loop, counting what fails."""

    def __init__(self, url: str, threads: int = 4, duration: float = 3.0) -> None:
        self.url = url
        self.duration = duration
        self.results: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.duration + 10)

    def wait(self) -> None:
        """Wait until the loop's duration has passed."""
        for thread in self._threads:
            thread.join(timeout=self.duration + 10)

    @property
    def requests(self) -> int:
        return sum(self.results.values())

    @property
    def failed(self) -> int:
        return self.requests - self.results["ok"]

    def _loop(self) -> None:
        deadline = time.monotonic() + self.duration
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                status, headers, _body = get(self.url + "/", timeout=5.0)
                outcome = "ok" if status == 200 else f"status {status}"
                version = headers.get("X-Demo-Version", "")
            except OSError as error:
                outcome, version = f"error {type(error).__name__}", ""
            with self._lock:
                self.results[outcome] += 1
                if version:
                    self.versions[version] += 1
                if outcome != "ok" and len(self.errors) < 20:
                    self.errors.append(outcome)


@pytest.fixture
def traffic() -> type[Traffic]:
    """The :class:`Traffic` loop class (use an instance as a context manager)."""
    return Traffic


@pytest.fixture
def http_get() -> Callable[..., tuple[int, dict[str, str], bytes]]:
    """:func:`get`: GET a URL on a new connection, return status, headers and body."""
    return get


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def alive() -> Callable[[int], bool]:
    """:func:`pid_alive`: whether a pid runs (a zombie does not)."""
    return pid_alive
