"""The plugin guide's complete strategy, probe and platform plugin, and their tests, run as written.

Every ```python block of docs/plugin-guide.md that starts with ``# guide_plugin/<file>`` is written to
a directory, and pytest runs the tests among them in a fresh interpreter, as a plugin author would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "plugin-guide.md"
BLOCK = re.compile(r"```python\n# (guide_plugin/[\w/]+\.py)\n(.*?)```", re.S)


def guide_files() -> dict[str, str]:
    """The example's files, by path, as the guide shows them."""
    return {path: body for path, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


def test_the_guide_shows_a_strategy_a_probe_a_platform_and_their_tests() -> None:
    assert set(guide_files()) == {
        "guide_plugin/strategy.py",
        "guide_plugin/probe.py",
        "guide_plugin/platform.py",
        "guide_plugin/conftest.py",
        "guide_plugin/test_guide_plugin.py",
    }


def test_the_guide_examples_pass_their_own_tests(tmp_path: Path) -> None:
    for path, body in guide_files().items():
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(body, encoding="utf-8")
    (tmp_path / "guide_plugin" / "__init__.py").write_text("", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "guide_plugin"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None and int(passed.group(1)) == 6, done.stdout
