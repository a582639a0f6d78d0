"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["zdu.testing"]

EXAMPLE_SOURCE = Path(__file__).parent / "data" / "zdu-example-plugin"


def pip_install(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build and install the package at ``source`` into a fresh directory; return that directory.

    The source is copied first: building in place would leave build/ and *.egg-info in tests/data.
    """
    work = tmp_path_factory.mktemp(source.name)
    copy = work / "source"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(copy)],
        check=True,
    )
    return site


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory zdu-example-plugin is installed into (once per session)."""
    return pip_install(EXAMPLE_SOURCE, tmp_path_factory)


@pytest.fixture
def example_plugin(example_plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """zdu-example-plugin on ``sys.path`` and ``PYTHONPATH`` for one test."""
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(example_plugin_site), os.environ.get("PYTHONPATH")]))
    )
    yield example_plugin_site
    sys.modules.pop("zdu_example_plugin", None)
