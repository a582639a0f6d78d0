"""Testing help for plugin authors: a pytest plugin.

Enable it in your ``conftest.py``::

    pytest_plugins = ["zdu.testing"]

and use the fixtures:

* ``zdu_plugin_manager``: a fresh plugin manager with every installed plugin loaded;
* ``zdu_bare_plugin_manager``: a fresh one with only the core's built-ins, for registering a plugin
  inline with :func:`register_inline`;
* ``zdu_state_dir``: a temporary state directory, also exported as ``ZDU_STATE_DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.registry import ZduPluginManager, get_plugin_manager

__all__ = ["register_inline"]


def register_inline(manager: ZduPluginManager, plugin: Any, name: str | None = None) -> str:
    """Register ``plugin`` (a module, class or object with ``@hookimpl`` functions) on ``manager``.

    Returns the name it was registered under.
    """
    plugin_name = name or getattr(plugin, "__name__", None) or f"inline-{id(plugin)}"
    manager.register_plugin(plugin, plugin_name, distribution=f"inline:{plugin_name}")
    return plugin_name


@pytest.fixture
def zdu_plugin_manager() -> ZduPluginManager:
    """A fresh plugin manager with every installed plugin (entry points of group ``zdu``) loaded."""
    return get_plugin_manager()


@pytest.fixture
def zdu_bare_plugin_manager() -> ZduPluginManager:
    """A fresh plugin manager with only the core's built-ins: register your plugin inline."""
    return get_plugin_manager(entry_points=False)


@pytest.fixture
def zdu_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary state directory, exported as ``ZDU_STATE_DIR`` for the code under test."""
    state = tmp_path / "zdu-state"
    state.mkdir()
    monkeypatch.setenv("ZDU_STATE_DIR", str(state))
    yield state
