"""The plugin-author guide and the hook specifications cannot drift apart."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zdu import hookspecs

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "plugin-guide.md"
EXAMPLE = ROOT / "tests" / "data" / "zdu-example-plugin"

HOOKSPECS: dict[str, Callable[..., Any]] = {
    name: function
    for name, function in vars(hookspecs).items()
    if name.startswith("zdu_") and inspect.isfunction(function)
}


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def signature_line(function: Callable[..., Any]) -> str:
    """The ``def`` line of ``function`` as written in its module, without a ``# type: ignore[...]``."""
    line = next(line for line in inspect.getsource(function).splitlines() if line.startswith("def "))
    return re.sub(r"\s*# type: ignore\[[^\]]*\]", "", line).rstrip()


def test_there_are_hookspecs_to_check() -> None:
    assert {"zdu_strategies", "zdu_probes", "zdu_upgrade_started", "zdu_phase_finished"} <= set(HOOKSPECS)


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_the_source_line_agrees_with_inspect_signature(name: str) -> None:
    function = HOOKSPECS[name]
    signature = inspect.signature(function)  # annotations stay strings: hookspecs.py defers them
    parameters = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())

    assert signature_line(function) == f"def {name}({parameters}) -> {signature.return_annotation}:"


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_is_in_the_guide_with_its_exact_signature(name: str, guide: str) -> None:
    line = signature_line(HOOKSPECS[name])

    assert f"\n### {name}\n" in guide, f"docs/plugin-guide.md has no heading for {name}"
    assert f"```python\n{line}\n```" in guide, f"docs/plugin-guide.md lacks the signature:\n{line}"


def test_the_guide_documents_no_hook_that_does_not_exist(guide: str) -> None:
    reference = guide.split("\n## Hook reference\n", 1)[1].split("\n## ", 1)[0]

    assert re.findall(r"^### (\w+)$", reference, re.MULTILINE) == list(HOOKSPECS)


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_docstring_has_params_version_and_example(name: str) -> None:
    function = HOOKSPECS[name]
    doc = inspect.getdoc(function) or ""

    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}: " in doc, f"{name} does not document parameter {parameter!r}"
    assert re.search(r"^\.\. versionadded:: \d+\.\d+$", doc, re.MULTILINE), f"{name} has no versionadded"
    example = doc.partition("\nExample::\n")[2]
    assert f"def {name}(" in example, f"{name} has no Example:: block with an implementation of it"
    assert "@hookimpl" in example


@pytest.mark.parametrize(
    "path", ["zdu_example_plugin/__init__.py", "pyproject.toml"], ids=["module", "pyproject"]
)
def test_the_example_plugin_is_in_the_guide_verbatim(path: str, guide: str) -> None:
    source = (EXAMPLE / path).read_text(encoding="utf-8")

    assert source.count("\n") > 20
    assert f"\n{source}```\n" in guide, f"docs/plugin-guide.md does not show {path} as it is in tests/data"


def test_the_guide_names_every_record_and_interface(guide: str) -> None:
    for name in (
        "StrategyPlugin",
        "TrafficLayerPlugin",
        "ProbePlugin",
        "PlatformPlugin",
        "MigrationRunnerPlugin",
        "### Strategy",
        "### TrafficLayer",
        "### Probe",
        "### Platform and Router",
        "### MigrationRunner",
        "ZDU_DISABLE_PLUGINS",
        "zdu_bare_plugin_manager",
        "zdu_plugin_manager",
        "zdu_state_dir",
        "register_inline",
        "`failure_limit`",
        "`inconclusive_limit`",
        "`interval`",
        "`dry_run`",
    ):
        assert name in guide, f"docs/plugin-guide.md does not mention {name}"
