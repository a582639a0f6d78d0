"""Helpers for fleet tests: sim fleets written as TOML, the cells' journals, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zdu.journal import Journal

RELEASE = "16.6.0"


def toml_value(value: Any) -> str:
    """A TOML value (JSON's strings, numbers, booleans and arrays are TOML's)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_fleet(
    directory: Path,
    rings: list[dict[str, Any]],
    cells: list[dict[str, Any]],
    *,
    platform: dict[str, Any] | None = None,
    fleet: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A fleet file of sim cells in ``directory``; state (journals, cells) in ``directory/state``."""
    state = directory / "state"
    platform = {"replicas": 2, "start_seconds": 1, "drain_seconds": 1, "time_scale": 0.02, **(platform or {})}
    head = {"name": "test-fleet", "release": RELEASE, "state_dir": str(state), **(fleet or {})}
    lines = ["[fleet]", *(f"{k} = {toml_value(v)}" for k, v in head.items()), extra, "[defaults]"]
    lines += [
        'target = { platform = "sim" }',
        f"platform = {toml_value(platform)}",
        'strategy = { name = "rolling", max_surge = 1, max_unavailable = 0 }',
        f"upgrade = {toml_value({'state_dir': str(state)})}",
    ]
    for ring in rings:
        lines += [
            "[[rings]]",
            *(f"{k} = {toml_value(v)}" for k, v in {"verify_seconds": 0.0, **ring}.items()),
        ]
    for cell in cells:
        lines += ["[[cells]]", *(f"{k} = {toml_value(v)}" for k, v in {"version": "16.5.0", **cell}.items())]
    path = directory / "fleet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def upgrades_of(state: Path, target: str) -> list[Any]:
    """Every upgrade of ``target`` in the cells' journal, oldest first."""
    journal_path = state / "journal.sqlite"
    if not journal_path.exists():
        return []
    return list(reversed(Journal(journal_path).upgrades(target, limit=100)))


def zdu(*args: str, check: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``zdu`` command line in a new process."""
    result = subprocess.run(
        [sys.executable, "-c", "from zdu.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check is not None:
        assert result.returncode == check, (result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result
