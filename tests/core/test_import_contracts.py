"""The import contracts of pyproject.toml: complete (every core module is protected) and able to fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)
LINT_IMPORTS = shutil.which("lint-imports", path=BIN) or shutil.which("lint-imports")


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["importlinter"]["contracts"])


def test_every_core_module_but_the_public_api_is_protected() -> None:
    (protected,) = [c for c in contracts() if c["type"] == "protected"]
    listed = set(protected["protected_modules"])  # type: ignore[arg-type]
    modules = {f"zdu.{p.stem}" for p in (ROOT / "zdu").glob("*.py") if p.stem != "__init__"}
    modules |= {f"zdu.{p.name}" for p in (ROOT / "zdu").iterdir() if (p / "__init__.py").exists()}
    assert "zdu.plugins" in modules and "zdu.plugins" not in listed
    assert listed == modules - {"zdu.plugins"}, "list every core module but zdu.plugins in protected_modules"


def test_every_plugin_package_is_independent() -> None:
    (independence,) = [c for c in contracts() if c["type"] == "independence"]
    packages = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}
    assert set(independence["modules"]) == packages - {"zdu_demo"}  # type: ignore[arg-type]


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "zdu", tmp_path / "zdu")
    shutil.copytree(ROOT / "plugins", tmp_path / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def lint_imports(directory: Path) -> subprocess.CompletedProcess[str]:
    if LINT_IMPORTS is None:
        pytest.skip("import-linter is not installed (pip install -e '.[lint]')")
    env = {**os.environ, "PYTHONPATH": f"{directory}{os.pathsep}{directory / 'plugins'}"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=directory, env=env, capture_output=True, text=True, check=False
    )


def add_import(module: Path, line: str) -> None:
    text = module.read_text(encoding="utf-8")
    head, tail = text.split("from __future__ import annotations\n", 1)
    module.write_text(f"{head}from __future__ import annotations\n{line}\n{tail}", encoding="utf-8")


def test_the_tree_keeps_the_contracts(copy: Path) -> None:
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("plugins/zdu_strategies/rolling.py", "import zdu.upgrade  # noqa", "through zdu.plugins BROKEN"),
        ("plugins/zdu_get/strategy.py", "import zdu_local.state  # noqa", "another plugin BROKEN"),
        ("plugins/zdu_demo/scenarios.py", "import zdu_migrations.sql  # noqa", "imports no plugin BROKEN"),
        ("zdu/model.py", "import zdu.upgrade  # noqa", "No import cycle in the core or a plugin BROKEN"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(copy: Path, module: str, line: str, broken: str) -> None:
    add_import(copy / module, line)
    result = lint_imports(copy)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout
