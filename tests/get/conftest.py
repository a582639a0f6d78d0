"""Fixtures for the get strategy: a local GET-like fleet (demo-app nodes behind a real HAProxy)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.journal import Journal
from zdu.model import Version
from zdu.registry import get_plugin_manager
from zdu.upgrade import Upgrade
from zdu_demo.scenarios import create_database
from zdu_get.fleet import LocalGetFleet

# 16.6 on: the nodes share a database as 16.6 left it (writes read back through any node)
FROM, TO = "16.6.0", "16.7.0"

requires_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
    reason="haproxy is not installed (nox -s tests installs it)",
)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Any]:
    """Start fleets under tmp_path; every one is stopped (HAProxy and nodes) at the end."""
    fleets: list[LocalGetFleet] = []

    def start(**options: Any) -> LocalGetFleet:
        directory = tmp_path / f"fleet{len(fleets)}"
        if "database" not in options:
            directory.mkdir(parents=True)
            options["database"] = directory / "gitlab.sqlite"
            create_database(options["database"], Version.parse(FROM))
        fleet = LocalGetFleet(directory, **options)
        fleets.append(fleet)
        fleet.up(FROM)
        return fleet

    yield start
    for fleet in fleets:
        fleet.down()


def get_config(fleet: LocalGetFleet, state_dir: Path, **strategy: Any) -> dict[str, Any]:
    """An upgrade of ``fleet`` from FROM to TO by the get strategy, with the http probe gating."""
    platform = strategy.pop("platform", {})
    return {
        "target": {"name": "get-e2e", "platform": "get", "version": FROM},
        "platform": fleet.platform_options(**platform),
        "release": {"version": TO},
        "strategy": {"name": "get", **strategy},
        # the get platform has no traffic layer: while versions are mixed, pages ask for assets of the
        # other version; allowed explicitly here (failed requests and lost writes are not)
        "probes": [
            {
                "name": "http",
                "rps": 40,
                "clients": 4,
                "failure_limit": 0,
                "interval": 0.5,
                "max_asset_errors": 100_000,
            }
        ],
        "migrations": {"name": "get-post-deployment"},
        "upgrade": {"state_dir": str(state_dir)},
    }


def run_upgrade(config: dict[str, Any]) -> tuple[Any, Journal]:
    """Run the upgrade; return its report and journal."""
    upgrade = Upgrade.from_config(config, get_plugin_manager())
    try:
        return upgrade.run(), upgrade.journal
    finally:
        upgrade.close()
