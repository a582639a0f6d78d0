"""Fixtures for end-to-end upgrades of a real local fleet: real nginx, real processes, real HTTP."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import attrs
import pytest

from zdu.config import load_config
from zdu.platform import PlatformEnv
from zdu.registry import get_plugin_manager
from zdu_demo import demo_app_command
from zdu_demo.scenarios import create_mixed_database
from zdu_local.platform import LocalPlatform

FROM, TO = "16.5.0", "16.6.0"


def write_config(
    directory: Path,
    *,
    strategy: str = "rolling",
    options: dict | None = None,
    fault: str | None = None,
    fault_version: str = TO,
    probe: dict | None = None,
    replicas: int = 3,
    ready_timeout: float = 10.0,
    name: str = "e2e",
    layers: list[str] | None = None,
    platform: dict | None = None,
) -> Path:
    """A cell.toml for a local fleet of demo apps; ``fault`` is injected into ``fault_version`` only.

    ``layers`` become ``strategy.layers``; ``platform`` adds (or overrides) options of ``[platform]``.
    The instances share a SQLite database (``gitlab.sqlite`` in ``directory``) with the demo's regular
    migrations applied, which both FROM and TO read: a write one instance acknowledged is read back
    through any, and the probe's lost writes are the upgrade's own.
    """
    database = directory / "gitlab.sqlite"
    if not (platform or {}).get("command") and not database.exists():
        create_mixed_database(database)
    command = demo_app_command(0.3, "--database", str(database))
    if fault:
        command += ["--fault", fault, "--fault-version", fault_version]
    platform_options = {
        "replicas": replicas,
        "command": command,
        "ready_timeout": ready_timeout,
        "drain_timeout": 5.0,
        "stop_grace": 3.0,
        **(platform or {}),
    }
    lines = [
        "[target]",
        f'name = "{name}"',
        'platform = "local"',
        f'version = "{FROM}"',
        "[platform]",
        *(f"{key} = {json.dumps(value)}" for key, value in platform_options.items()),
        "[release]",
        f'version = "{TO}"',
        "[strategy]",
        f'name = "{strategy}"',
    ]
    if layers is not None:
        lines.append(f"layers = {json.dumps(layers)}")
    lines += [f"{key} = {json.dumps(value)}" for key, value in (options or {}).items()]
    # Without a traffic layer, pages rendered by one version ask for assets only the other has: these
    # tests are about the rollout's mechanics, so asset errors are allowed explicitly (the probe's
    # default fails on any); failed requests, lost writes, cut streams and dropped sockets are not.
    probe = {"rps": 60, "clients": 6, "max_asset_errors": 1_000_000, **(probe or {})}
    lines += ["[[probes]]", 'name = "http"'] + [f"{k} = {json.dumps(v)}" for k, v in probe.items()]
    lines += ["[upgrade]", f'state_dir = "{directory / "state"}"']
    path = directory / "cell.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fleet(tmp_path):
    """Start the fleet a config describes (call it with the config path); stopped at the end."""
    platforms: list[LocalPlatform] = []

    def start(config_path: Path) -> LocalPlatform:
        config = load_config(config_path, get_plugin_manager())
        platform = LocalPlatform(config.platform.options, PlatformEnv(config.target, config.target_state_dir))
        platforms.append(platform)
        platform.up(config.target.version)
        return platform

    yield start
    for platform in platforms:
        platform.down()


@attrs.define
class Response:
    at: float
    status: int | None
    version: str | None


@attrs.define
class Traffic:
    """A bounded loop of plain HTTP requests, a user's own client: independent of zdu's probe."""

    url: str
    responses: list[Response] = attrs.field(factory=list)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            at = time.monotonic()
            try:
                with urllib.request.urlopen(self.url + "/api/v4/version", timeout=5) as answer:
                    self.responses.append(Response(at, answer.status, json.load(answer)["version"]))
            except urllib.error.HTTPError as error:
                self.responses.append(Response(at, error.code, error.headers.get("X-Demo-Version")))
            except OSError:
                self.responses.append(Response(at, None, None))
            time.sleep(0.01)

    def stop(self) -> list[Response]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)
        return self.responses

    def failures(self) -> list[Response]:
        return [r for r in self.responses if r.status is None or r.status >= 500]

    def longest_gap_without_old_version(self, version: str) -> float:
        """The longest time between two successful answers from ``version``."""
        times = [r.at for r in self.responses if r.status == 200 and r.version == version]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))
