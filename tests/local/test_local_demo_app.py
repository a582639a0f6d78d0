"""The demo app, run as the platform runs it: a process on a free loopback port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zdu_local.demo_app import asset_hash
from zdu_local.network import free_port

Get = Callable[..., tuple[int, dict[str, str], bytes]]


class Demo:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def start_demo(tmp_path: Path, http_get: Get) -> Iterator[Callable[..., Demo]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str, version: str = "16.6.0") -> Demo:
        port = free_port("127.0.0.1")
        log = (tmp_path / f"demo-{port}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zdu_local.demo_app",
                "--version",
                version,
                "--port",
                str(port),
                *arguments,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        demo = Demo(process, port)
        deadline = time.monotonic() + 10
        while True:
            try:
                http_get(demo.url + "/-/liveness", timeout=1)
                return demo
            except OSError:
                assert process.poll() is None, (
                    f"demo app exited: {(tmp_path / f'demo-{port}.log').read_text()}"
                )
                assert time.monotonic() < deadline, "demo app did not listen within 10s"
                time.sleep(0.02)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_serves_page_assets_readiness_and_version(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo(version="16.6.0")
    fingerprint = asset_hash("16.6.0")
    assert fingerprint != asset_hash("16.5.0") and len(fingerprint) == 16

    status, headers, body = http_get(demo.url + "/")
    assert status == 200 and headers["X-Demo-Version"] == "16.6.0"
    assert f"/assets/application-{fingerprint}.js".encode() in body
    assert f"/assets/application-{fingerprint}.css".encode() in body
    for suffix, content_type in (("js", "application/javascript"), ("css", "text/css")):
        status, headers, body = http_get(f"{demo.url}/assets/application-{fingerprint}.{suffix}")
        assert (status, headers["Content-Type"], headers["X-Demo-Version"]) == (200, content_type, "16.6.0")
        assert b"16.6.0" in body
    assert http_get(demo.url + "/-/readiness")[0] == 200
    assert http_get(demo.url + "/-/liveness")[0] == 200
    status, headers, body = http_get(demo.url + "/api/v4/version")
    assert status == 200 and headers["X-Demo-Version"] == "16.6.0"
    assert json.loads(body)["version"] == "16.6.0"


def test_another_versions_asset_is_404(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo(version="16.6.0")
    status, headers, _ = http_get(f"{demo.url}/assets/application-{asset_hash('16.5.0')}.js")
    assert status == 404 and headers["X-Demo-Version"] == "16.6.0"


def test_startup_delay_is_not_ready_then_ready(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--startup-delay", "1.0")
    assert http_get(demo.url + "/-/readiness")[0] == 503
    assert http_get(demo.url + "/")[0] == 503
    assert http_get(demo.url + "/-/liveness")[0] == 200
    time.sleep(1.1)
    assert http_get(demo.url + "/-/readiness")[0] == 200
    assert http_get(demo.url + "/")[0] == 200


def test_sigterm_lets_a_slow_request_in_flight_finish(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--request-delay-ms", "1500")
    answers: list[tuple[int, bytes]] = []

    def slow_request() -> None:
        status, _headers, body = http_get(demo.url + "/", timeout=10)
        answers.append((status, body))

    client = threading.Thread(target=slow_request)
    client.start()
    time.sleep(0.3)
    demo.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Shutting down: the listening socket is closed, the request in flight goes on.
    with pytest.raises(OSError):
        http_get(demo.url + "/-/liveness", timeout=1)
    assert demo.process.poll() is None
    client.join(timeout=10)
    assert answers and answers[0][0] == 200 and b"16.6.0" in answers[0][1]
    assert demo.process.wait(timeout=5) == 0


def test_fault_never_ready(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--fault", "never-ready")
    time.sleep(0.2)
    assert http_get(demo.url + "/-/readiness")[0] == 503
    assert http_get(demo.url + "/-/liveness")[0] == 200


def test_fault_5xx(start_demo: Callable[..., Demo], http_get: Get) -> None:
    demo = start_demo("--fault", "5xx")
    assert http_get(demo.url + "/")[0] == 500
    assert http_get(f"{demo.url}/assets/application-{asset_hash('16.6.0')}.css")[0] == 500
    assert http_get(demo.url + "/-/readiness")[0] == 200


def test_fault_crash_after(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo("--fault", "crash-after:0.3")
    assert demo.process.wait(timeout=5) == 1


def test_fault_applies_only_to_its_version(start_demo: Callable[..., Demo], http_get: Get) -> None:
    spared = start_demo("--fault", "5xx", "--fault-version", "16.5.0", version="16.6.0")
    hit = start_demo("--fault", "5xx", "--fault-version", "16.5.0", version="16.5.0")
    assert http_get(spared.url + "/")[0] == 200
    assert http_get(hit.url + "/")[0] == 500


def test_unknown_fault_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zdu_local.demo_app", "--version", "1.0.0", "--port", "1", "--fault", "bad"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "unknown fault 'bad'" in result.stderr


def test_export_assets_writes_what_the_app_serves(
    start_demo: Callable[..., Demo], http_get: Get, tmp_path: Path
) -> None:
    directory = tmp_path / "exported"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "zdu_local.demo_app",
            "--export-assets",
            str(directory),
            "--version",
            "16.6.0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    fingerprint = asset_hash("16.6.0")
    names = sorted(path.name for path in directory.iterdir())
    assert names == [f"application-{fingerprint}.css", f"application-{fingerprint}.js"]
    assert sorted(done.stdout.split()) == names
    demo = start_demo(version="16.6.0")
    for name in names:
        status, _headers, body = http_get(f"{demo.url}/assets/{name}")
        assert status == 200 and body == (directory / name).read_bytes()


def test_serving_needs_a_port() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zdu_local.demo_app", "--version", "1.0.0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "--port is required" in result.stderr
