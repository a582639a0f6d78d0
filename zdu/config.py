"""Configuration: a TOML file (or a mapping) structured into attrs types with cattrs.

Every bad field is reported, each on its own line, by its dotted path and value
(``strategy.max_surge: expected an integer, got 'one'``), and nothing is applied when any is bad.

The file::

    [target]
    name = "uat-cell-1"
    platform = "local"          # a registered platform
    version = "16.5.0"          # the version it runs now

    [platform]                  # options of that platform
    replicas = 3

    [release]
    version = "16.6.0"

    [strategy]
    name = "rolling"            # a registered strategy
    layers = ["sticky-nginx"]   # registered traffic layers
    max_surge = 1               # options of that strategy

    [layers.sticky-nginx]       # options of a layer (optional)

    [[probes]]
    name = "http"               # a registered probe
    failure_limit = 0           # gate settings every probe has
    rps = 100                   # options of that probe

    [migrations]                # optional
    name = "sql"
    defer_post = false          # true: leave post-deployment migrations to 'zdu migrate post'
    wait_for_background_migrations = false   # true: migrate(post) ends once they are finished...
    background_migrations_timeout = 3600     # ...or fails after this many seconds
    background_migrations_interval = 5       # seconds between two looks at them

    [upgrade]                   # optional
    state_dir = "/var/lib/zdu"
"""

from __future__ import annotations

import reprlib
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.v import transform_error

from zdu.errors import ConfigError, UsageError
from zdu.journal import default_state_dir
from zdu.model import Release, Target, Version
from zdu.probe import GateSettings
from zdu.records import (
    MigrationRunnerPlugin,
    PlatformPlugin,
    PluginRecord,
    StrategyPlugin,
    TrafficLayerPlugin,
)
from zdu.registry import ZduPluginManager
from zdu.secret import Secret, register_secret, register_url_credentials

__all__ = [
    "ComponentSpec",
    "ProbeSpec",
    "UpgradeConfig",
    "load_config",
    "missing_capabilities",
    "structure",
    "unstructure",
]

T = TypeVar("T")


@attrs.frozen
class ComponentSpec:
    """A named implementation picked by configuration, with its structured options."""

    name: str
    record: PluginRecord[Any]
    options: Any

    def build(self, *args: Any) -> Any:
        """Call the record's factory with the structured options (and ``args``)."""
        factory: Any = getattr(self.record, "factory")  # noqa: B009 - every record subclass has one
        return factory(self.options, *args)


@attrs.frozen
class ProbeSpec(ComponentSpec):
    """A probe, with the gate settings every probe has."""

    gate: GateSettings = attrs.field(factory=GateSettings)


@attrs.frozen
class UpgradeConfig:
    """A whole upgrade, as configured."""

    target: Target
    release: Release
    platform: ComponentSpec
    strategy: ComponentSpec
    layers: tuple[ComponentSpec, ...] = ()
    probes: tuple[ProbeSpec, ...] = ()
    migrations: ComponentSpec | None = None
    defer_post: bool = False
    #: wait at the end of migrate(post) until no batched background migration is unfinished
    wait_for_background_migrations: bool = False
    background_migrations_timeout: float = 3600.0
    background_migrations_interval: float = 5.0
    state_dir: Path = attrs.field(factory=default_state_dir)
    source: Path | None = None
    #: HOST:PORT to serve the upgrade's metrics on while it runs (``zdu.metrics``)
    metrics_address: str | None = None
    #: the Pushgateway to push the metrics to at the end
    pushgateway: str | None = None
    #: webhooks told of every end (Slack-compatible JSON; secrets)
    webhooks: tuple[Secret, ...] = ()

    @property
    def target_state_dir(self) -> Path:
        """The directory the platform keeps this target's state in."""
        return self.state_dir / "targets" / self.target.name

    @property
    def journal_path(self) -> Path:
        """The journal file."""
        return self.state_dir / "journal.sqlite"

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data, every secret replaced by ``***``: what the journal keeps."""
        return {
            "target": {
                "name": self.target.name,
                "platform": self.target.platform,
                "version": str(self.target.version),
            },
            "release": {"version": str(self.release.version)},
            "platform": unstructure(self.platform.options),
            "strategy": {"name": self.strategy.name, **unstructure(self.strategy.options)},
            "layers": {layer.name: unstructure(layer.options) for layer in self.layers},
            "probes": [
                {"name": p.name, **unstructure(p.gate), **unstructure(p.options)} for p in self.probes
            ],
            "migrations": (
                {
                    "name": self.migrations.name,
                    "defer_post": self.defer_post,
                    "wait_for_background_migrations": self.wait_for_background_migrations,
                    "background_migrations_timeout": self.background_migrations_timeout,
                    "background_migrations_interval": self.background_migrations_interval,
                    **unstructure(self.migrations.options),
                }
                if self.migrations
                else None
            ),
            "upgrade": {
                "state_dir": str(self.state_dir),
                "metrics_address": self.metrics_address,
                "pushgateway": self.pushgateway,
                "webhooks": list(self.webhooks),
            },
        }


# -- a strict converter -----------------------------------------------------------------------------


class _FieldValueError(ValueError):
    """A value of the wrong type; the message names the value."""


_shortened = reprlib.Repr()
_shortened.maxlevel = 2
_shortened.maxstring = 60
_shortened.maxother = 60
_shortened.maxlist = _shortened.maxtuple = _shortened.maxdict = 4


def _shown(value: object) -> str:
    """``repr(value)`` cut short: an error line quotes a value, never a whole (or endlessly deep) table."""
    return _shortened.repr(value)


def _strict_int(value: object, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldValueError(f"expected an integer, got {_shown(value)}")
    return value


def _strict_float(value: object, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldValueError(f"expected a number, got {_shown(value)}")
    return float(value)


def _strict_str(value: object, _type: type) -> str:
    if not isinstance(value, str):
        raise _FieldValueError(f"expected a string, got {_shown(value)}")
    return value


def _strict_bool(value: object, _type: type) -> bool:
    if not isinstance(value, bool):
        raise _FieldValueError(f"expected true or false, got {_shown(value)}")
    return value


def _version(value: object, _type: type) -> Version:
    if isinstance(value, Version):
        return value
    return Version.parse(_strict_str(value, str))


def _secret(value: object, _type: type) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):  # the value is not shown: a secret of the wrong type is still one
        kind = type(value).__name__
        article = "an" if kind[:1] in "aeiou" else "a"
        raise _FieldValueError(f"expected a string (a secret, not shown), got {article} {kind}")
    return Secret(value)


def _path(value: object, _type: type) -> Path:
    return Path(_strict_str(value, str)).expanduser()


def _sequences(converter: cattrs.Converter) -> None:
    """A list option given anything but a list says so (not "'int' object is not iterable")."""

    def factory(type_: Any) -> Any:
        origin = get_origin(type_)
        if origin is tuple:
            inner = homogenous_tuple_structure_factory(type_, converter)
        else:
            inner = list_structure_factory(type_, converter)

        def hook(value: object, actual: Any) -> Any:
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
                raise _FieldValueError(f"expected a list, got {_shown(value)}")
            return inner(value, actual)

        return hook

    def is_list_like(type_: Any) -> bool:
        if not is_sequence(type_) or get_origin(type_) is None:
            return False
        arguments = get_args(type_)
        return get_origin(type_) is not tuple or (len(arguments) == 2 and arguments[1] is Ellipsis)

    converter.register_structure_hook_factory(is_list_like, factory)

    def table_factory(type_: Any) -> Any:
        inner = mapping_structure_factory(type_, converter)

        def hook(value: object, actual: Any) -> Any:
            if not isinstance(value, Mapping):
                raise _FieldValueError(f"expected a table, got {_shown(value)}")
            return inner(value, actual)

        return hook

    converter.register_structure_hook_factory(
        lambda type_: is_mapping(type_) and get_origin(type_) is not None, table_factory
    )


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    _sequences(converter)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(Version, _version)
    converter.register_structure_hook(Secret, _secret)
    converter.register_structure_hook(Path, _path)
    converter.register_unstructure_hook(Secret, str)
    converter.register_unstructure_hook(Version, str)
    converter.register_unstructure_hook(Path, str)
    return converter


_converter = _make_converter()


def _describe(error: BaseException, type_: type | None) -> str:
    if isinstance(error, KeyError):
        return "required field missing"
    if isinstance(error, ForbiddenExtraKeysError):
        known = ", ".join(a.name for a in attrs.fields(error.cl)) if attrs.has(error.cl) else ""
        unknown = ", ".join(repr(k) for k in sorted(error.extra_fields))
        return f"unknown field {unknown}" + (f" (known: {known})" if known else " (this takes no options)")
    if isinstance(error, ValueError | TypeError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def structure(data: Mapping[str, Any], type_: type[T], path: str) -> T:
    """Structure ``data`` into ``type_``; raise :class:`~zdu.errors.ConfigError` naming every bad field.

    Every field is checked, its validator too, even when another field is bad: a wrong type in one
    option does not hide an out-of-range value in the next.
    """
    _register_secret_fields(data, type_)
    try:
        return _converter.structure(dict(data), type_)
    except RecursionError:
        raise ConfigError(f"{path or '$'}: nested too deeply") from None
    except Exception as error:  # cattrs wraps field errors in exception groups
        messages = transform_error(error, path="$", format_exception=_describe)
        messages += _validator_messages(data, type_, messages)
        raise ConfigError([_with_path(path, message) for message in messages]) from None


def _mentions_secret(type_: Any) -> bool:
    if type_ is Secret:
        return True
    return any(_mentions_secret(argument) for argument in get_args(type_))


def _register_secret_fields(data: object, type_: Any, depth: int = 0) -> None:
    """Register every string given to a field typed ``Secret`` (in any container), even a bad one.

    Done before structuring, so that an error about such a field cannot quote its value.
    """
    if depth > 20 or not isinstance(data, Mapping):
        return
    if not (isinstance(type_, type) and attrs.has(type_)):
        return
    try:
        fields = attrs.fields(attrs.resolve_types(type_))
    except (NameError, TypeError):
        return
    for field in fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if _mentions_secret(field.type):
            _register_strings(value)
        for inner in (field.type, *get_args(field.type)):
            if isinstance(value, list | tuple):
                for item in value:
                    _register_secret_fields(item, inner, depth + 1)
            else:
                _register_secret_fields(value, inner, depth + 1)


def _each_string(value: object, on_string: Callable[[str], object], limit: int, depth: int = 0) -> None:
    """Call ``on_string`` with every string in ``value`` (mappings' values, lists), ``limit`` levels deep."""
    if isinstance(value, str):
        on_string(value)
    elif depth < limit and isinstance(value, Mapping):
        for item in value.values():
            _each_string(item, on_string, limit, depth + 1)
    elif depth < limit and isinstance(value, list | tuple):
        for item in value:
            _each_string(item, on_string, limit, depth + 1)


def _register_strings(value: object) -> None:
    """Register every string in ``value`` as a secret."""
    _each_string(value, register_secret, 20)


def _register_url_credentials(value: object) -> None:
    """Register the credentials of every URL in a configuration's strings (a platform URL with a password)."""
    _each_string(value, register_url_credentials, 50)


def _validator_messages(data: Mapping[str, Any], type_: type, reported: Sequence[str]) -> list[str]:
    """The validators' complaints about the fields of ``data`` that structured, when others did not.

    attrs runs validators when the whole object is built, which a bad field prevents; each field
    that structures on its own is validated here (against the defaults of the fields that did not).
    """
    if not attrs.has(type_):
        return []
    fields = attrs.fields(attrs.resolve_types(type_))
    values: dict[str, Any] = {}
    for field in fields:
        if field.default is not attrs.NOTHING:
            factory = getattr(field.default, "factory", None)
            plain = callable(factory) and not getattr(field.default, "takes_self", False)
            values[field.name] = factory() if plain and factory is not None else field.default
    good = {
        field.name: value
        for field in fields
        if field.name in data and (value := _structured(data[field.name], field.type)) is not _BAD
    }
    values.update(good)
    instance = _Fields(values)
    mentioned = {message.rpartition(" @ ")[2] for message in reported}
    messages = []
    for field in fields:
        if field.name not in good or field.validator is None or f"$.{field.name}" in mentioned:
            continue
        try:
            field.validator(instance, field, good[field.name])
        except (ValueError, TypeError) as error:
            messages.append(f"{error} @ $.{field.name}")
        except AttributeError:  # a validator that reads a field that did not structure: attrs will say
            pass
    return messages


_BAD = object()


def _structured(value: object, type_: Any) -> Any:
    """``value`` structured into ``type_``, or ``_BAD`` when it does not (reported elsewhere)."""
    if type_ is None:
        return _BAD
    try:
        return _converter.structure(value, type_)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, cattrs.BaseValidationError):
        return _BAD


class _Fields:
    """Field values by attribute, as a validator reads its object's other fields."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


def unstructure(value: Any) -> dict[str, Any]:
    """Plain data from an attrs configuration object (secrets stay :class:`Secret` until redacted)."""
    data = _converter.unstructure(value)
    return data if isinstance(data, dict) else {}


def _with_path(prefix: str, message: str) -> str:
    text, _, where = message.rpartition(" @ ")
    if not text:
        text, where = message, "$"
    where = where.removeprefix("$").removeprefix(".")
    full = ".".join(part for part in (prefix, where) if part)
    return f"{full}: {text}" if full else text


# -- loading ---------------------------------------------------------------------------------------

_TOP_LEVEL = ("target", "platform", "release", "strategy", "layers", "probes", "migrations", "upgrade")


def load_config(source: Path | str | Mapping[str, Any], manager: ZduPluginManager) -> UpgradeConfig:
    """Read and check a whole configuration; raise :class:`ConfigError` listing every problem.

    :param source: a TOML file, or the same content as a mapping (for callers that build it in code).
    :param manager: the plugin manager that resolves strategy, layer, probe, platform and runner names.
    """
    path: Path | None = None
    if isinstance(source, Mapping):
        raw: dict[str, Any] = dict(source)
    else:
        path = Path(source)
        raw = _read_toml(path)
    _register_url_credentials(raw)
    problems: list[str] = []
    collector = _Collector(problems)

    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append(f"{key}: unknown section (known: {', '.join(_TOP_LEVEL)})")

    target_raw = collector.table(raw, "target", required=True)
    target = None
    if target_raw:
        fields = {
            key: collector.call(
                f"target.{key}", lambda key=key, check=check: check(_require(target_raw, "target", key))
            )
            for key, check in (("name", _target_name), ("platform", _plugin_name), ("version", _version_text))
        }
        if all(value is not None for value in fields.values()):
            target = Target(**fields)
    for key in target_raw:
        if key not in ("name", "platform", "version"):
            problems.append(f"target.{key}: unknown field (known: name, platform, version)")

    release_raw = collector.table(raw, "release", required=True)
    release = collector.call(
        "release.version", lambda: Release(version=_require(release_raw, "release", "version"))
    )
    for key in release_raw:
        if key != "version":
            problems.append(f"release.{key}: unknown field (known: version)")

    platform = None
    if target is not None:
        platform = collector.component(
            "platform",
            target.platform,
            collector.table(raw, "platform"),
            manager.platform,
            name_field="target.platform",
        )

    strategy_raw = dict(collector.table(raw, "strategy", required=True))
    strategy_name = strategy_raw.pop("name", None)
    layer_names = strategy_raw.pop("layers", [])
    strategy = None
    if strategy_name is None:
        problems.append("strategy.name: required field missing")
    else:
        strategy = collector.component("strategy", strategy_name, strategy_raw, manager.strategy)
    layers_raw = collector.table(raw, "layers")
    layers: list[ComponentSpec] = []
    if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
        problems.append(f"strategy.layers: expected a list of layer names, got {_shown(layer_names)}")
    else:
        if len(set(layer_names)) != len(layer_names):
            problems.append(f"strategy.layers: a layer is named twice in {_shown(layer_names)}")
        for name in layer_names:
            options = layers_raw.get(name, {})
            spec = collector.component(
                f"layers.{name}", name, options, manager.traffic_layer, name_field="strategy.layers"
            )
            if spec is not None:
                layers.append(spec)
        for name in layers_raw:
            if name not in layer_names:
                problems.append(f"layers.{name}: options for a layer that strategy.layers does not name")

    probes: list[ProbeSpec] = []
    probes_raw = raw.get("probes", [])
    if not isinstance(probes_raw, list):
        problems.append(f"probes: expected a list of tables ([[probes]]), got {_shown(probes_raw)}")
        probes_raw = []
    for index, probe_raw in enumerate(probes_raw):
        where = f"probes[{index}]"
        if not isinstance(probe_raw, dict):
            problems.append(f"{where}: expected a table, got {_shown(probe_raw)}")
            continue
        options = dict(probe_raw)
        name = options.pop("name", None)
        gate_raw = {f.name: options.pop(f.name) for f in attrs.fields(GateSettings) if f.name in options}
        gate = collector.call(
            where, lambda gate_raw=gate_raw, where=where: structure(gate_raw, GateSettings, where)
        )
        if name is None:
            problems.append(f"{where}.name: required field missing")
            continue
        spec = collector.component(where, name, options, manager.probe, name_field=f"{where}.name")
        if spec is not None and gate is not None:
            probes.append(ProbeSpec(name=spec.name, record=spec.record, options=spec.options, gate=gate))

    migrations = None
    defer_post = False
    background: dict[str, Any] = {}
    if "migrations" in raw:
        migrations_raw = dict(collector.table(raw, "migrations"))
        runner_name = migrations_raw.pop("name", None)
        if "defer_post" in migrations_raw:
            value = migrations_raw.pop("defer_post")
            defer_post = collector.call("migrations.defer_post", lambda: _strict_bool(value, bool)) is True
        background = _background_options(collector, migrations_raw)
        if runner_name is None:
            problems.append("migrations.name: required field missing")
        else:
            migrations = collector.component(
                "migrations", runner_name, migrations_raw, manager.migration_runner
            )

    upgrade_raw = collector.table(raw, "upgrade")
    state_dir = default_state_dir()
    outputs = _upgrade_outputs(upgrade_raw, collector)
    for key, value in upgrade_raw.items():
        if key in _OUTPUT_FIELDS:
            continue
        if key == "state_dir":
            resolved = collector.call("upgrade.state_dir", lambda value=value: _path(value, Path))
            if resolved is not None and not resolved.is_absolute() and path is not None:
                resolved = path.parent.resolve() / resolved  # relative to the configuration file
            if resolved is not None:
                state_dir = resolved
        else:
            problems.append(f"upgrade.{key}: unknown field (known: state_dir, {', '.join(_OUTPUT_FIELDS)})")

    if problems:
        raise ConfigError(problems)
    assert target is not None and release is not None and platform is not None and strategy is not None
    missing = missing_capabilities(platform, strategy, layers, migrations)
    if missing:
        raise ConfigError(missing)
    return UpgradeConfig(
        target=target,
        release=release,
        platform=platform,
        strategy=strategy,
        layers=tuple(layers),
        probes=tuple(probes),
        migrations=migrations,
        defer_post=defer_post,
        **background,
        state_dir=state_dir.resolve(),
        source=path.resolve() if path is not None else None,
        **outputs,
    )


_OUTPUT_FIELDS = ("metrics_address", "pushgateway", "webhooks")


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``; :class:`ConfigError` naming the file when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {str(path)!r} does not exist") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it: {error.strerror or error}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: encoded in UTF-16; save it as UTF-8 (TOML files are UTF-8)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {error.start} is {data[error.start : error.start + 1]!r}); "
            "TOML files are UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def missing_capabilities(
    platform: ComponentSpec,
    strategy: ComponentSpec,
    layers: Sequence[ComponentSpec] = (),
    migrations: ComponentSpec | None = None,
) -> list[str]:
    """One line for every plugin that requires a capability the platform does not provide.

    Each line names the plugin and its field, the missing capabilities, the platform and what it
    provides: ``strategy.name: 'get' requires the platform capability 'omnibus-nodes', which
    target.platform 'local' does not provide (it provides: affinity, ...)``.
    """
    provides = platform.record.provides if isinstance(platform.record, PlatformPlugin) else frozenset()
    offered = ", ".join(sorted(provides)) or "nothing beyond the base"
    users = [("strategy.name", strategy), *(("strategy.layers", layer) for layer in layers)]
    if migrations is not None:
        users.append(("migrations.name", migrations))
    lines = []
    for field, spec in users:
        record = spec.record
        if not isinstance(record, StrategyPlugin | TrafficLayerPlugin | MigrationRunnerPlugin):
            continue
        lacking = sorted(record.requires - provides)
        if lacking:
            names = ", ".join(repr(name) for name in lacking)
            what = "capability" if len(lacking) == 1 else "capabilities"
            lines.append(
                f"{field}: {spec.name!r} requires the platform {what} {names}, which target.platform "
                f"{platform.name!r} does not provide (it provides: {offered})"
            )
    return lines


def _upgrade_outputs(upgrade_raw: Mapping[str, Any], collector: _Collector) -> dict[str, Any]:
    """``upgrade.metrics_address``, ``upgrade.pushgateway`` and ``upgrade.webhooks``, checked."""
    from zdu.metrics import parse_address  # noqa: PLC0415 - prometheus-client only when used

    outputs: dict[str, Any] = {}
    if "metrics_address" in upgrade_raw:
        value = upgrade_raw["metrics_address"]
        if collector.call("upgrade.metrics_address", lambda: parse_address(_strict_str(value, str))):
            outputs["metrics_address"] = value
    if "pushgateway" in upgrade_raw:
        value = upgrade_raw["pushgateway"]
        if collector.call("upgrade.pushgateway", lambda: _http_url(value)):
            outputs["pushgateway"] = value
    if "webhooks" in upgrade_raw:
        value = upgrade_raw["webhooks"]
        _register_strings(value)  # secrets, even when they are not URLs
        if not isinstance(value, list):
            collector.problems.append("upgrade.webhooks: expected a list of webhook URLs")
        else:
            hooks = [
                collector.call(f"upgrade.webhooks[{i}]", lambda v=v: _http_url(v))
                for i, v in enumerate(value)
            ]
            if all(hooks):
                outputs["webhooks"] = tuple(Secret(v) for v in value)
    return outputs


def _http_url(value: object) -> str:
    """``value`` when it is an http(s) URL; else ``ValueError`` (naming no secret: only its scheme)."""
    text = _strict_str(value, str)
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest:
        raise ValueError(f"expected an http(s) URL, got one starting {text.split(':')[0][:10]!r}")
    return text


def _background_options(collector: _Collector, migrations_raw: dict[str, Any]) -> dict[str, Any]:
    """Take the orchestrator's options about background migrations out of ``[migrations]``."""
    found: dict[str, Any] = {}
    if "wait_for_background_migrations" in migrations_raw:
        value = migrations_raw.pop("wait_for_background_migrations")
        wait = collector.call("migrations.wait_for_background_migrations", lambda: _strict_bool(value, bool))
        if wait is not None:
            found["wait_for_background_migrations"] = wait
    for key in ("background_migrations_timeout", "background_migrations_interval"):
        if key in migrations_raw:
            value = migrations_raw.pop(key)
            seconds = collector.call(f"migrations.{key}", lambda value=value: _positive_seconds(value))
            if seconds is not None:
                found[key] = seconds
    return found


def _positive_seconds(value: object) -> float:
    seconds = _strict_float(value, float)
    if not seconds > 0:
        raise ValueError(f"expected a positive number of seconds, got {_shown(value)}")
    return seconds


def _target_name(value: object) -> str:
    name = _strict_str(value, str)
    Target(name=name, platform="-", version="0.0.0")  # runs the name's validator
    return name


def _plugin_name(value: object) -> str:
    return _strict_str(value, str)


def _version_text(value: object) -> Version:
    return _version(value, Version)


def _require(table: Mapping[str, Any], section: str, key: str) -> Any:
    if key not in table:
        raise ConfigError(f"{section}.{key}: required field missing")
    return table[key]


@attrs.define
class _Collector:
    """Runs checks, turning their errors into problem lines instead of stopping at the first."""

    problems: list[str]

    def table(self, raw: Mapping[str, Any], key: str, *, required: bool = False) -> Mapping[str, Any]:
        if key not in raw:
            if required:
                self.problems.append(f"{key}: required section missing")
            return {}
        value = raw[key]
        if not isinstance(value, dict):
            self.problems.append(f"{key}: expected a table, got {_shown(value)}")
            return {}
        return value

    def call(self, where: str, function: Any) -> Any:
        try:
            return function()
        except ConfigError as error:
            self.problems.extend(error.problems)
        except UsageError as error:
            self.problems.append(f"{where}: {error}")
        except (ValueError, TypeError) as error:
            self.problems.append(f"{where}: {error}")
        return None

    def component(
        self,
        where: str,
        name: object,
        options: Mapping[str, Any],
        lookup: Any,
        *,
        name_field: str | None = None,
    ) -> ComponentSpec | None:
        name_where = name_field or f"{where}.name"
        if not isinstance(name, str):
            self.problems.append(f"{name_where}: expected a name, got {_shown(name)}")
            return None
        try:
            record = lookup(name)
        except UsageError as error:
            self.problems.append(f"{name_where}: {error}")
            return None
        structured = self.call(where, lambda: structure(options, record.config, where))
        if structured is None:
            return None
        return ComponentSpec(name=name, record=record, options=structured)
