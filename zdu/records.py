"""The hook marker and the registration records (the core's home of them).

Plugins import them from :mod:`zdu.plugins`, the public plugin API, which re-exports them: write
``from zdu.plugins import hookimpl, StrategyPlugin``. The core imports them from here (a core module
importing :mod:`zdu.plugins` would be an import cycle).

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names match the hook
specifications in :mod:`zdu.hookspecs`. It is found through an entry point in group ``zdu``::

    [project.entry-points.zdu]
    my-strategies = "my_package.zdu_plugin"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import pluggy

if TYPE_CHECKING:
    from zdu.migrations import MigrationEnv, MigrationRunner
    from zdu.platform import Platform, PlatformEnv
    from zdu.probe import Probe
    from zdu.strategy import Strategy, TrafficLayer

__all__ = [
    "PROJECT_NAME",
    "MigrationRunnerPlugin",
    "NoConfig",
    "PlatformPlugin",
    "PluginRecord",
    "ProbePlugin",
    "StrategyPlugin",
    "TrafficLayerPlugin",
    "hookimpl",
]

PROJECT_NAME = "zdu"

#: Marks a function as an implementation of a zdu hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

_NAME = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")

ConfigT = TypeVar("ConfigT")


@attrs.frozen
class NoConfig:
    """The configuration type of a plugin that takes no options."""


def _valid_plugin_name(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"plugin name {value!r} is not valid: use lowercase letters and digits, words joined by '-' "
            "or '_' (for example 'blue-green')"
        )


def _capability_names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError(f"capabilities: expected a set of names, got the string {value!r}")
    return frozenset(value)


def _valid_capability_names(
    _instance: object, attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]
) -> None:
    for name in sorted(value):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"{attribute.name}: capability name {name!r} is not valid (for example 'instance-groups')"
            )


@attrs.frozen
class PluginRecord(Generic[ConfigT]):
    """What every registration hook returns: a named implementation and its configuration type.

    :ivar name: the name configuration uses to pick it (``strategy.name = "rolling"``).
    :ivar summary: one line for ``zdu plugins``.
    :ivar config: an attrs class; the implementation's table in the configuration file is structured
        into it with cattrs, and every bad field is reported by name.
    """

    name: str = attrs.field(validator=_valid_plugin_name)
    summary: str = attrs.field(kw_only=True)
    config: type[ConfigT] = attrs.field(kw_only=True, default=NoConfig)  # type: ignore[assignment]


@attrs.frozen
class StrategyPlugin(PluginRecord[ConfigT]):
    """A rollout strategy (``recreate``, ``rolling``, ``blue-green``, ...).

    :ivar factory: builds the strategy from its structured configuration.
    :ivar requires: the platform capabilities the strategy uses (``{"instance-groups"}``); a
        configuration pairing it with a platform that lacks one is refused when it is loaded.
    """

    factory: Callable[[ConfigT], Strategy] = attrs.field(kw_only=True)
    requires: frozenset[str] = attrs.field(
        kw_only=True, factory=frozenset, converter=_capability_names, validator=_valid_capability_names
    )


@attrs.frozen
class TrafficLayerPlugin(PluginRecord[ConfigT]):
    """A traffic layer (``sticky-nginx``, ``assets-shim``), combined with any rollout strategy.

    :ivar requires: the platform capabilities the layer uses (``{"affinity"}``), checked at load.
    """

    factory: Callable[[ConfigT], TrafficLayer] = attrs.field(kw_only=True)
    requires: frozenset[str] = attrs.field(
        kw_only=True, factory=frozenset, converter=_capability_names, validator=_valid_capability_names
    )


@attrs.frozen
class ProbePlugin(PluginRecord[ConfigT]):
    """A probe (``http``, ``apdex``, ``prometheus``, ``qa``)."""

    factory: Callable[[ConfigT], Probe] = attrs.field(kw_only=True)


@attrs.frozen
class PlatformPlugin(PluginRecord[ConfigT]):
    """A platform (``local``, ``kubernetes``).

    :ivar factory: builds the platform for one target from its configuration and a
        :class:`~zdu.platform.PlatformEnv`.
    :ivar provides: the capabilities the platforms it builds implement (``{"instance-groups",
        "affinity"}``), beside the base :class:`~zdu.platform.Platform` every platform has; each must
        be implemented (the capability's protocols pass ``isinstance``).
    """

    factory: Callable[[ConfigT, PlatformEnv], Platform] = attrs.field(kw_only=True)
    provides: frozenset[str] = attrs.field(
        kw_only=True, factory=frozenset, converter=_capability_names, validator=_valid_capability_names
    )


@attrs.frozen
class MigrationRunnerPlugin(PluginRecord[ConfigT]):
    """A migration runner (``sql``, ``gitlab-rake``).

    :ivar requires: the platform capabilities the runner uses (``{"command-host"}``), checked at load.
    """

    factory: Callable[[ConfigT, MigrationEnv], MigrationRunner] = attrs.field(kw_only=True)
    requires: frozenset[str] = attrs.field(
        kw_only=True, factory=frozenset, converter=_capability_names, validator=_valid_capability_names
    )


AnyRecord = PluginRecord[Any]
