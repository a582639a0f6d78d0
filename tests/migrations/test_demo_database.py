"""The demo app's database and the demo migrations: which order breaks which version.

Real demo-app processes on loopback ports share one SQLite file, migrated by the ``sql`` runner with
the migrations the local platform ships (``zdu_demo/demo_db``).
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zdu.migrations import Stage
from zdu.network import free_port
from zdu_demo.demo_app import DEMO_BASE_SCHEMA, DEMO_MIGRATIONS
from zdu_migrations.sql import SqlRunner

from .conftest import DatabaseUnderTest

OLD, NEW = "16.5.0", "16.6.0"


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start a demo app of a version on a database; its port. Every app is stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(version: str, database: Path) -> int:
        port = free_port("127.0.0.1")
        log = tmp_path / f"app-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zdu_demo.demo_app",
                    "--version",
                    version,
                    "--port",
                    str(port),
                    "--database",
                    str(database),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        deadline = time.monotonic() + 20
        while True:
            try:
                get(port, "/-/liveness")
                return port
            except OSError:
                assert process.poll() is None, f"demo app exited: {log.read_text()}"
                assert time.monotonic() < deadline, "demo app did not listen within 20s"
                time.sleep(0.02)

    yield start
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def demo_runner(tmp_path: Path, make_runner: Callable[..., SqlRunner]) -> tuple[SqlRunner, Path]:
    """A runner of the demo migrations on a database set up as 16.5 left it."""
    database = tmp_path / "demo.sqlite"
    runner = make_runner(f"sqlite://{database}", DEMO_MIGRATIONS)
    assert runner.apply(Stage.PRE, through=DEMO_BASE_SCHEMA) == ["20231001000000_create_projects"]
    return runner, database


def test_the_demo_migrations_tell_the_story_of_a_column_rename(
    demo_runner: tuple[SqlRunner, Path], start_app: Callable[..., int]
) -> None:
    runner, database = demo_runner
    assert runner.pending(Stage.PRE) == [
        "20231016000000_add_path_to_projects",
        "20231016000003_create_batched_background_migrations",
    ]
    assert runner.pending(Stage.POST) == [
        "20231016000001_drop_legacy_path_from_projects",
        "20231016000005_queue_backfill_projects_path",
    ]
    old, new = start_app(OLD, database), start_app(NEW, database)

    # 16.5's schema: the old version serves, the new one cannot until the regular migration ran.
    status, body = get(old)
    assert status == 200 and b"project Demo Project at demo-group/demo-project" in body
    status, body = get(new)
    assert status == 500 and b"no such column: path" in body

    runner.apply(Stage.PRE)
    # Both versions work with the regular migration applied: it is additive.
    assert get(old)[0] == 200
    status, body = get(new)
    assert status == 200 and b"project Demo Project at demo-project" in body
    sqlite = DatabaseUnderTest("sqlite", f"sqlite://{database}", None)
    assert sqlite.query("SELECT path FROM projects WHERE id = 1") == [("demo-project",)]  # 16.6 wrote it
    # only for the project it shows: the background migration fills the others (test_background_migrations)
    assert sqlite.query("SELECT count(*) FROM projects WHERE path IS NULL") == [(99,)]

    runner.apply(Stage.POST)
    # The post-deployment migration breaks the old version only.
    status, body = get(old)
    assert status == 500 and b"no such column: legacy_path" in body
    assert get(new)[0] == 200
    assert get(old, "/-/readiness")[0] == 200 and get(old, "/api/v4/version")[0] == 200


def test_a_missing_database_file_is_not_created(start_app: Callable[..., int], tmp_path: Path) -> None:
    port = start_app(NEW, tmp_path / "absent.sqlite")
    status, body = get(port)
    assert status == 500 and b"unable to open database file" in body
    assert not (tmp_path / "absent.sqlite").exists()  # never creates an empty database


def test_instances_share_the_file_while_migrations_run(
    demo_runner: tuple[SqlRunner, Path], start_app: Callable[..., int]
) -> None:
    runner, database = demo_runner
    runner.apply(Stage.PRE)
    ports = [start_app(NEW, database) for _ in range(3)]
    results: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def load(port: int) -> None:
        while not stop.is_set():
            try:
                status, _ = get(port)
            except OSError:
                status = 0  # a connection error
            with lock:
                results[status] += 1

    clients = [threading.Thread(target=load, args=(port,)) for port in ports for _ in range(2)]
    for client in clients:
        client.start()
    try:
        while sum(results.values()) < 100:
            time.sleep(0.01)
        runner.apply(Stage.POST)
        seen = sum(results.values())
        while sum(results.values()) < seen + 100:
            time.sleep(0.01)
    finally:
        stop.set()
        for client in clients:
            client.join(30)

    assert set(results) == {200}, results
