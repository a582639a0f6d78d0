"""The plugin manager: every strategy, layer, probe, platform and migration runner zdu can use.

Build one with :func:`get_plugin_manager`. It registers the core's own observers, then loads every
entry point of group ``zdu`` (first-party plugins included, exactly as a third-party one), skipping
those named in ``ZDU_DISABLE_PLUGINS``. A plugin that fails to load is left out and the rest keeps
working. Loading stays quiet about it (a debug line in the log): the failure is shown where it matters,
by ``zdu plugins`` (an *unavailable* plugin with the extra to install, when a missing optional
dependency is the cause; a *failed* one otherwise) and in the error for a name that only the missing
plugin could have registered.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, TypeVar, cast

import attrs
import pluggy

from zdu import hookspecs
from zdu.errors import PluginNotFound, ZduError
from zdu.records import (
    PROJECT_NAME,
    MigrationRunnerPlugin,
    PlatformPlugin,
    PluginRecord,
    ProbePlugin,
    StrategyPlugin,
    TrafficLayerPlugin,
)

__all__ = ["DISABLE_ENV", "PluginFailure", "ZduPluginManager", "get_plugin_manager"]

log = logging.getLogger("zdu.registry")

#: Environment variable: comma-separated entry-point names of plugins not to load.
DISABLE_ENV = "ZDU_DISABLE_PLUGINS"

#: Plugins inside the core, registered from this explicit list (never by scanning).
BUILTIN_PLUGINS: tuple[str, ...] = ("zdu.observers",)

#: The registration hooks: collected by :meth:`ZduPluginManager._records`. Every other hook is an
#: observer hook (lifecycle, notification, commands), called through pluggy with each implementation
#: isolated: one that raises is logged, naming its plugin, and the others still run.
REGISTRATION_HOOKS = frozenset(
    {"zdu_strategies", "zdu_traffic_layers", "zdu_probes", "zdu_platforms", "zdu_migration_runners"}
)

RecordT = TypeVar("RecordT", bound=PluginRecord[Any])


class DuplicatePluginName(ZduError):
    """Two plugins register the same name for the same kind of implementation."""


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded, and what to do about it."""

    name: str
    distribution: str
    error: str
    extra: str | None = None

    @property
    def unavailable(self) -> bool:
        """Whether the cause is an optional dependency not installed (an extra), not a bug."""
        return self.extra is not None

    @property
    def install(self) -> str | None:
        """The command that installs the missing extra (``pip install 'zdu[kubernetes]'``), if one does."""
        return f"pip install '{self.distribution}[{self.extra}]'" if self.extra else None

    def describe(self) -> str:
        """One line: the plugin, its distribution, the error, and the extra that cures it."""
        cure = f" (install {self.distribution}[{self.extra}])" if self.extra else ""
        return f"plugin {self.name!r} from {self.distribution} failed to load: {self.error}{cure}"

    def explain(self, kind: str, name: str) -> str:
        """Why the ``kind`` called ``name``, which this plugin would have registered, is not there."""
        if self.unavailable:
            return (
                f"{kind} {name!r} is not available: plugin {self.name!r} from {self.distribution} needs "
                f"its extra {self.extra!r}: {self.install}"
            )
        return f"{kind} {name!r} is not available: {self.describe()}"


class ZduPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` with typed accessors, so no caller writes ``pm.hook.*``."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._distributions: dict[str, str] = {}
        self._cache: dict[str, Mapping[str, Any]] = {}
        self._owners: dict[tuple[str, str], str] = {}

    # -- loading -----------------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` as :meth:`pluggy.PluginManager.register` does, isolating its observers.

        Each implementation of an observer hook (every hook but the registration ones) is guarded:
        pluggy still calls it in its order (``tryfirst``, ``trylast``, wrappers around the rest), but
        an exception it raises is logged with its plugin's name instead of ending the hook call, so
        one broken observer never stops the others, nor the upgrade.
        """
        plugin_name = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or ():
            if caller.name in REGISTRATION_HOOKS:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    # pluggy keeps the implementation's options and argument names on the HookImpl and
                    # calls ``impl.function(*args)``: swapping in the guarded function is all it takes
                    impl.function = _isolated(impl, caller.name)  # type: ignore[misc]
        return plugin_name

    def register_plugin(self, plugin: object, name: str, distribution: str = "") -> None:
        """Register ``plugin`` (a module or object with ``@hookimpl`` functions) under ``name``."""
        self.register(plugin, name=name)
        self._distributions[name] = distribution or getattr(plugin, "__name__", name)
        self._cache.clear()

    def load_builtins(self) -> None:
        """Register the core's own plugins, from :data:`BUILTIN_PLUGINS`."""
        for module_name in BUILTIN_PLUGINS:
            self.register_plugin(importlib.import_module(module_name), module_name, "zdu")

    def load_entrypoints(self, disabled: Iterable[str] = ()) -> None:
        """Load every entry point of group ``zdu`` but those in ``disabled``; record failures."""
        blocked = set(disabled)
        seen: set[str] = set()
        for entry_point in sorted(importlib.metadata.entry_points(group=PROJECT_NAME), key=lambda e: e.name):
            if entry_point.name in blocked or entry_point.name in seen or self.has_plugin(entry_point.name):
                continue
            seen.add(entry_point.name)
            distribution = entry_point.dist.name if entry_point.dist is not None else "unknown distribution"
            try:
                plugin = entry_point.load()
                self.register_plugin(plugin, entry_point.name, distribution)
                self._check_hooks_known(plugin)
            except Exception as error:  # a broken plugin must not break zdu
                if self.has_plugin(entry_point.name):
                    self.unregister(name=entry_point.name)
                failure = PluginFailure(
                    name=entry_point.name,
                    distribution=distribution,
                    error=f"{type(error).__name__}: {' '.join(str(error).split())}",
                    extra=_extra_for(error, entry_point.dist),
                )
                # quiet: every command builds a manager; `zdu plugins` and the lookups tell the failure
                log.debug("%s", failure.describe())
                self.failures.append(failure)

    def _check_hooks_known(self, plugin: object) -> None:
        """Raise :class:`pluggy.PluginValidationError` when ``plugin`` implements a hook zdu does not have."""
        for caller in self.get_hookcallers(plugin) or ():
            if not caller.has_spec() and any(
                not impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin
            ):
                raise pluggy.PluginValidationError(plugin, f"no hook is called {caller.name!r}")

    def distribution_of(self, plugin_name: str) -> str:
        """The distribution a registered plugin came from."""
        return self._distributions.get(plugin_name, plugin_name)

    # -- registration records ----------------------------------------------------------------------

    def strategies(self) -> Mapping[str, StrategyPlugin[Any]]:
        """Every registered rollout strategy, by name."""
        return self._records("zdu_strategies", StrategyPlugin)

    def traffic_layers(self) -> Mapping[str, TrafficLayerPlugin[Any]]:
        """Every registered traffic layer, by name."""
        return self._records("zdu_traffic_layers", TrafficLayerPlugin)

    def probes(self) -> Mapping[str, ProbePlugin[Any]]:
        """Every registered probe, by name."""
        return self._records("zdu_probes", ProbePlugin)

    def platforms(self) -> Mapping[str, PlatformPlugin[Any]]:
        """Every registered platform, by name."""
        return self._records("zdu_platforms", PlatformPlugin)

    def migration_runners(self) -> Mapping[str, MigrationRunnerPlugin[Any]]:
        """Every registered migration runner, by name."""
        return self._records("zdu_migration_runners", MigrationRunnerPlugin)

    def strategy(self, name: str) -> StrategyPlugin[Any]:
        """The strategy called ``name``, or :class:`~zdu.errors.PluginNotFound` listing what there is."""
        return self._lookup("strategy", name, self.strategies())

    def traffic_layer(self, name: str) -> TrafficLayerPlugin[Any]:
        """The traffic layer called ``name``."""
        return self._lookup("traffic layer", name, self.traffic_layers())

    def probe(self, name: str) -> ProbePlugin[Any]:
        """The probe called ``name``."""
        return self._lookup("probe", name, self.probes())

    def platform(self, name: str) -> PlatformPlugin[Any]:
        """The platform called ``name``."""
        return self._lookup("platform", name, self.platforms())

    def migration_runner(self, name: str) -> MigrationRunnerPlugin[Any]:
        """The migration runner called ``name``."""
        return self._lookup("migration runner", name, self.migration_runners())

    def provider_of(self, record: PluginRecord[Any]) -> str:
        """The distribution that registered ``record``."""
        plugin_name = self._owners.get((type(record).__name__, record.name))
        return self.distribution_of(plugin_name) if plugin_name else "unknown"

    def _lookup(self, kind: str, name: str, records: Mapping[str, RecordT]) -> RecordT:
        if name in records:
            return records[name]
        # a plugin's entry point is named after what it registers (`kubernetes`, `get`): say what is missing
        for failure in self.failures:
            if failure.name == name:
                raise PluginNotFound(failure.explain(kind, name))
        installed = ", ".join(sorted(records)) or "none"
        message = f"unknown {kind} {name!r}; installed: {installed}"
        if self.failures:
            message += "; " + "; ".join(f.describe() for f in self.failures)
        raise PluginNotFound(message)

    def _records(self, hook_name: str, record_type: type[RecordT]) -> Mapping[str, RecordT]:
        if hook_name in self._cache:
            return self._cache[hook_name]
        records: dict[str, RecordT] = {}
        owners: dict[str, str] = {}
        for plugin_name, record in self._records_with_plugins(hook_name):
            if not isinstance(record, record_type):
                raise ZduError(
                    f"plugin {plugin_name!r} returned {record!r} from {hook_name}(); "
                    f"expected {record_type.__name__} records"
                )
            if record.name in records:
                raise DuplicatePluginName(
                    f"{record_type.__name__} name {record.name!r} is registered twice: by "
                    f"{self.distribution_of(owners[record.name])} (plugin {owners[record.name]!r}) and by "
                    f"{self.distribution_of(plugin_name)} (plugin {plugin_name!r})"
                )
            records[record.name] = record
            owners[record.name] = plugin_name
            self._owners[(type(record).__name__, record.name)] = plugin_name
        result = dict(sorted(records.items()))
        self._cache[hook_name] = result
        return result

    def _records_with_plugins(self, hook_name: str) -> list[tuple[str, object]]:
        hook = getattr(self.hook, hook_name)
        found: list[tuple[str, object]] = []
        for impl in reversed(hook.get_hookimpls()):  # registration order
            result = impl.function()
            if result is None:
                continue
            if isinstance(result, str) or not isinstance(result, Iterable):
                raise ZduError(
                    f"plugin {impl.plugin_name!r} returned {result!r} from {hook_name}(); "
                    "expected an iterable of records (return a list or yield them)"
                )
            found.extend((impl.plugin_name, record) for record in result)
        return found

    # -- lifecycle hooks ---------------------------------------------------------------------------

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call observer hook ``hook_name`` through pluggy: every implementation, in pluggy's order.

        Wrappers (``wrapper=True``, ``hookwrapper=True``) wrap the others, ``tryfirst`` ones come first
        and ``trylast`` ones last, as pluggy documents; an implementation that raises is logged, naming
        its plugin, and the others still run (see :meth:`register`).
        """
        getattr(self.hook, hook_name)(**kwargs)


def _report_observer_failure(impl: pluggy.HookImpl, hook_name: str, what: str = "failed") -> None:
    log.error(
        "observer %r %s in %s; the upgrade goes on",
        impl.plugin_name,
        what,
        hook_name,
        exc_info=what == "failed",
    )


def _isolated(impl: pluggy.HookImpl, hook_name: str) -> Callable[..., Any]:
    """``impl``'s function, guarded so that an exception it raises is reported and goes no further."""
    function = impl.function
    if getattr(function, "__zdu_isolated__", False):
        return function
    if impl.wrapper or impl.hookwrapper:

        def isolated_wrapper(*args: Any) -> Generator[None, Any, Any]:
            try:
                inner = cast(Generator[Any, Any, Any], function(*args))
                next(inner)
            except Exception:  # broken before its yield: the hook goes on as if it were not there
                _report_observer_failure(impl, hook_name)
                return (yield)
            try:
                result = yield
            except BaseException:  # only an interruption gets here: the others are isolated too
                inner.close()
                raise
            try:
                inner.send(result)
            except StopIteration as stop:
                return stop.value if impl.wrapper else None
            except Exception:
                _report_observer_failure(impl, hook_name)
                return result if impl.wrapper else None
            inner.close()
            _report_observer_failure(impl, hook_name, "yielded more than once")
            return result if impl.wrapper else None

        guarded: Callable[..., Any] = isolated_wrapper
    else:

        def isolated(*args: Any) -> Any:
            try:
                return function(*args)
            except Exception:
                _report_observer_failure(impl, hook_name)
                return None

        guarded = isolated
    guarded.__zdu_isolated__ = True  # type: ignore[attr-defined]
    guarded.__wrapped__ = function  # type: ignore[attr-defined]
    return guarded


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;.*extra\s*==\s*['\"]([^'\"]+)['\"]")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _extra_for(error: BaseException, dist: importlib.metadata.Distribution | None) -> str | None:
    """The extra of ``dist`` that provides the module ``error`` says is missing, if one does."""
    missing = getattr(error, "name", None)
    if not isinstance(error, ImportError) or not missing or dist is None:
        return None
    top = _normalise(missing.split(".")[0])
    sizes: dict[str, int] = {}
    providers: list[str] = []
    for requirement in dist.requires or ():
        match = _REQUIREMENT.match(requirement)
        if not match:
            continue
        sizes[match.group(2)] = sizes.get(match.group(2), 0) + 1
        if _normalise(match.group(1)).removeprefix("python_") == top.removeprefix("python_"):
            providers.append(match.group(2))
    # the narrowest extra that provides it ("kubernetes", not "all", which includes it)
    return min(providers, key=lambda extra: (sizes[extra], extra)) if providers else None


def disabled_from_environment() -> list[str]:
    """The plugin names in ``ZDU_DISABLE_PLUGINS``."""
    return [name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()]


def get_plugin_manager(
    *, entry_points: bool = True, disabled: Iterable[str] | None = None
) -> ZduPluginManager:
    """Build a plugin manager: the core's built-ins, then every entry point of group ``zdu``.

    :param entry_points: load installed plugins (turn off to register plugins by hand, in tests).
    :param disabled: entry-point names not to load; by default those in ``ZDU_DISABLE_PLUGINS``.
    """
    manager = ZduPluginManager()
    manager.load_builtins()
    if entry_points:
        manager.load_entrypoints(disabled_from_environment() if disabled is None else disabled)
    manager.check_pending()
    return manager
