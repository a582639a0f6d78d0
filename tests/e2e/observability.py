"""Real Prometheus, Pushgateway and headless Chromium for the observability tests (Debian's packages).

Each is started on a free loopback port in the test's own directory, waited for with a bound, and
stopped (terminate, then kill) when the test ends. Tests skip when the binary is missing, unless CI
is set: there the noxfile installs them, and a missing one must fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]

#: Screenshots and pages the tests keep (git-ignored); ZDU_TEST_ARTIFACTS moves it.
ARTIFACTS = Path(os.environ.get("ZDU_TEST_ARTIFACTS", ROOT / "artifacts"))


#: http probe options for tests about something else: the mixed-version asset errors of a plain
#: rolling upgrade and the writes an in-memory demo app loses when it stops do not fail the gates.
TOLERANT = {"max_asset_errors": 10**6, "max_lost_writes": 10**6}


def need(binary: str) -> str:
    """The path of ``binary``; skip the test without it (fail under CI)."""
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed (the noxfile's tests session installs it)")
        pytest.skip(f"{binary} is not installed (apt-get install {binary})")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.load(answer)


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return str(answer.read().decode())


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (OSError, urllib.error.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


class Prometheus:
    """A real Prometheus scraping every second: static targets, and a file of targets to rewrite."""

    def __init__(self, directory: Path, static: dict[str, list[str]], honor: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets_file = directory / "targets.json"
        self.targets_file.write_text("[]")
        jobs: list[dict[str, Any]] = [
            {
                "job_name": "fleet",
                "metrics_path": "/-/metrics",
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }
        ]
        for name, targets in static.items():
            jobs.append(
                {
                    "job_name": name,
                    "honor_labels": name in honor,
                    "static_configs": [{"targets": targets}],
                }
            )
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": jobs}
        self.config_file = directory / "prometheus.yml"
        self.config_file.write_text(json.dumps(config))  # YAML is a superset of JSON

    def argv(self) -> list[str]:
        return [
            need("prometheus"),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def set_targets(self, addresses: list[str]) -> None:
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text(json.dumps([{"targets": sorted(addresses)}]))
        temporary.replace(self.targets_file)

    def query(self, expression: str) -> list[dict[str, Any]]:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        body = get_json(address)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, expression: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expression)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.25)


@contextlib.contextmanager
def running_prometheus(
    directory: Path, static: dict[str, list[str]] | None = None, honor: tuple[str, ...] = ()
) -> Iterator[Prometheus]:
    directory.mkdir(parents=True, exist_ok=True)
    prometheus = Prometheus(directory, static or {}, honor)
    with process(prometheus.argv(), directory / "prometheus.log"):
        wait_http(prometheus.url + "/-/ready", timeout=60)
        yield prometheus


@contextlib.contextmanager
def running_pushgateway(directory: Path) -> Iterator[str]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        need("prometheus-pushgateway"),
        f"--web.listen-address=127.0.0.1:{port}",
        f"--persistence.file={directory / 'pushgateway.data'}",  # not Debian's shared default
    ]
    with process(argv, directory / "pushgateway.log"):
        wait_http(url + "/-/ready", timeout=30)
        yield url


class FleetTargets:
    """Keeps a Prometheus' file of targets equal to the fleet's instances, until stopped."""

    def __init__(self, prometheus: Prometheus, state_file: Path) -> None:
        self.prometheus = prometheus
        self.state_file = state_file
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 300
        last: list[str] = []
        while not self._stop.wait(0.2) and time.monotonic() < deadline:
            try:
                state = json.loads(self.state_file.read_text())
            except (OSError, ValueError):
                continue
            addresses = [f"{i['host']}:{i['port']}" for i in state.get("instances", [])]
            if addresses != last:
                self.prometheus.set_targets(addresses)
                last = addresses

    def __enter__(self) -> FleetTargets:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def chromium_screenshot(page: Path, screenshot: Path, *, height: int = 2400) -> str:
    """Open ``page`` in headless Chromium: save a screenshot, return the DOM after load."""
    browser = need("chromium")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zdu-chromium-") as profile:
        common = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
        ]
        subprocess.run(
            [*common, f"--screenshot={screenshot}", f"--window-size=1300,{height}", page.as_uri()],
            check=True,
            timeout=120,
            capture_output=True,
        )
        dom = subprocess.run(
            [*common, "--dump-dom", page.as_uri()], check=True, timeout=120, capture_output=True, text=True
        )
    return dom.stdout
