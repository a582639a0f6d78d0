"""A base install (``pip install zdu``, no extras) is quiet about the plugins whose extras are missing.

A fresh virtualenv gets the project with its core dependencies only; the ``get``, ``instrumentor`` and
``kubernetes`` plugins cannot load there. ``zdu --version`` and ``zdu plugins`` say nothing on stderr,
``zdu plugins`` lists the three as unavailable with the command that installs each, and a
configuration that asks for one of them is refused naming the plugin and the extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with ``pip install <this project>``: no extras."""
    where = tmp_path_factory.mktemp("base-install") / "venv"
    venv.create(where, with_pip=True)
    subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        check=True,
        timeout=600,
    )
    return where


def zdu(venv_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(venv_dir / "bin" / "zdu"), *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        cwd=cwd,
        timeout=120,
    )


def test_the_extras_are_really_missing(base_venv: Path) -> None:
    """The check can fail: in the test's own environment every extra is installed."""
    code = (
        "import importlib.util as u\n"
        "print([m for m in ('kubernetes', 'jsonpatch', 'ansible_runner') if u.find_spec(m)])"
    )
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    there = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )

    assert here.stdout.strip() == "['kubernetes', 'jsonpatch', 'ansible_runner']"
    assert there.stdout.strip() == "[]"


def test_version_says_nothing_on_stderr(base_venv: Path) -> None:
    result = zdu(base_venv, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("zdu, version ")
    assert result.stderr == ""


def test_plugins_lists_the_unavailable_ones_with_their_extras(base_venv: Path) -> None:
    result = zdu(base_venv, "plugins")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "  rolling " in result.stdout and "  local " in result.stdout
    assert "  kubernetes " not in result.stdout.split("unavailable")[0]  # not among the loaded ones
    unavailable = result.stdout.split("unavailable (an optional dependency is not installed):\n")[1]
    rows = {line.split()[0]: line for line in unavailable.splitlines() if line.startswith("  ")}
    assert sorted(rows) == ["get", "instrumentor", "kubernetes"]
    assert rows["kubernetes"].startswith("  kubernetes     pip install 'zdu[kubernetes]'  [zdu]")
    assert "pip install 'zdu[get]'" in rows["get"]
    assert "pip install 'zdu[instrumentor]'" in rows["instrumentor"]
    assert "not loaded:" not in result.stdout  # nothing is broken, only not installed


def test_plugins_json_says_which_are_unavailable(base_venv: Path) -> None:
    result = zdu(base_venv, "plugins", "--json")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    failed = {f["plugin"]: f for f in json.loads(result.stdout)["failed"]}
    assert sorted(failed) == ["get", "instrumentor", "kubernetes"]
    assert failed["kubernetes"]["unavailable"] is True
    assert failed["kubernetes"]["extra"] == "kubernetes"
    assert failed["kubernetes"]["install"] == "pip install 'zdu[kubernetes]'"


def test_asking_for_an_unavailable_platform_names_the_plugin_and_the_extra(
    base_venv: Path, tmp_path: Path
) -> None:
    config = tmp_path / "cell.toml"
    config.write_text(
        '[target]\nname = "cell-1"\nplatform = "kubernetes"\nversion = "16.5.0"\n'
        '[release]\nversion = "16.6.0"\n[strategy]\nname = "rolling"\n'
        f'[upgrade]\nstate_dir = "{tmp_path / "state"}"\n'
    )

    result = zdu(base_venv, "plan", str(config))

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() == (
        "zdu: error: target.platform: platform 'kubernetes' is not available: plugin 'kubernetes' from zdu "
        "needs its extra 'kubernetes': pip install 'zdu[kubernetes]'"
    )
