"""A fleet: many cells (targets) upgraded ring by ring, each cell an ordinary zdu upgrade.

GitLab Dedicated patches its tenants in rings, ring 0 outward, each ring validated before the next,
inside each tenant's weekly maintenance window and never during a change freeze. This module is the
description of such a fleet (a TOML file) and what follows from it without running anything: every
cell's upgrade path (one minor version at a time, required stops included, as
:mod:`zdu.policy` rules) and when each cell may start. :mod:`zdu.fleet_run` runs it.

The file::

    [fleet]
    name = "dedicated-eu"
    release = "16.6.0"              # the version every cell ends on
    stops = ["16.5.3"]              # versions to stop at on the way (default: X.Y.0 of each minor)
    state_dir = ".zdu-fleet"        # the fleet journal; relative to this file

    [[fleet.freeze]]                # no cell starts inside a freeze (UTC)
    start = 2026-12-21T00:00:00Z
    end = 2027-01-04T00:00:00Z
    reason = "year-end"

    [defaults]                      # what every cell's upgrade configuration shares (zdu.config's
    target = { platform = "local" } # sections, without target.name, target.version and release)
    strategy = { name = "rolling" }

    [[rings]]
    name = "ring-0"
    concurrency = 1                 # cells upgraded at once
    bake_seconds = 600              # after the ring: its probes keep watching this long
    failure_budget = 0              # failed cells the ring tolerates before the fleet halts
    on_failure = "stop"             # past the budget: "stop" starting cells, or "finish" the ring
    approval = false                # a person approves the ring before it starts
    verify_seconds = 2.0            # each cell's verify phase

    [[cells]]
    name = "tenant-a"               # with count = N: a pattern such as "sim-{index:04d}"
    ring = "ring-0"
    version = "16.5.0"              # the version it runs now
    window = "sat,sun 22:00-02:00"  # weekly maintenance window (UTC); default: any time
    config = "cells/tenant-a.toml"  # optional: its own upgrade configuration instead of [defaults]
    platform = { replicas = 3 }     # optional: sections merged over [defaults] (or over config)
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from zdu.config import UpgradeConfig, load_config, structure
from zdu.errors import ConfigError, PreflightError, UsageError, VersionError
from zdu.model import Version
from zdu.policy import REQUIRED_STOP_MINORS, check_upgrade_path, next_minor
from zdu.registry import ZduPluginManager

__all__ = [
    "ON_FAILURE",
    "Cell",
    "Fleet",
    "Freeze",
    "Ring",
    "Window",
    "load_fleet",
]

#: What a ring does once its failures pass the budget: stop starting cells, or finish the ring first.
ON_FAILURE = ("stop", "finish")

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
_CELL_SECTIONS = ("target", "platform", "strategy", "layers", "probes", "migrations", "upgrade")
_CELL_FIELDS = ("name", "ring", "version", "count", "window", "config", *_CELL_SECTIONS)


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return value


@attrs.frozen
class Window:
    """A weekly maintenance window in UTC: ``"sat,sun 22:00-02:00"``, ``"mon-fri 01:00-05:00"``.

    Days are ``mon`` … ``sun``, lists (``sat,sun``), ranges (``mon-fri``) or ``daily``; the window
    opens at the first time on each of those days and lasts until the second, past midnight when the
    second is not later. ``daily 00:00-24:00`` is always open.
    """

    text: str
    days: frozenset[int]
    start: int  # minutes after midnight
    duration: int  # minutes

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse ``text``; raise ValueError naming it when it is no window."""
        match = _WINDOW.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a weekly window such as 'sat,sun 22:00-02:00' (UTC)")
        days: set[int] = set()
        for part in match["days"].lower().split(","):
            if part == "daily":
                days.update(range(7))
                continue
            first, _, last = part.partition("-")
            if first not in _DAYS or (last and last not in _DAYS):
                raise ValueError(f"{text!r}: {part!r} is not a day (mon … sun, a range mon-fri, or daily)")
            a, b = _DAYS.index(first), _DAYS.index(last or first)
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
        start, end = _minutes(match["start"]), _minutes(match["end"])
        duration = end - start if end > start else end + 24 * 60 - start
        return cls(text=text.strip(), days=frozenset(days), start=start % (24 * 60), duration=duration)

    def _openings(self, around: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        midnight = around.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(-1, 9):
            day = midnight + dt.timedelta(days=offset)
            if day.weekday() in self.days:
                opens = day + dt.timedelta(minutes=self.start)
                yield opens, opens + dt.timedelta(minutes=self.duration)

    def contains(self, moment: dt.datetime) -> bool:
        """Whether the window is open at ``moment`` (an aware datetime)."""
        return any(opens <= moment < closes for opens, closes in self._openings(moment))

    def next_open(self, moment: dt.datetime) -> dt.datetime:
        """``moment`` when the window is open then, else when it next opens."""
        if self.contains(moment):
            return moment
        return min(opens for opens, _ in self._openings(moment) if opens > moment)


@attrs.frozen
class Freeze:
    """A change freeze of the whole fleet: no cell starts from ``start`` until ``end`` (UTC)."""

    start: dt.datetime
    end: dt.datetime
    reason: str = ""

    def contains(self, moment: dt.datetime) -> bool:
        """Whether ``moment`` falls inside the freeze."""
        return self.start <= moment < self.end


@attrs.frozen
class Ring:
    """A ring of cells and how it runs.

    :ivar name: the ring's name (cells name it in ``ring``).
    :ivar concurrency: at most this many of its cells are upgraded at once.
    :ivar bake_seconds: after its cells, how long the ring's probes and health checks keep watching
        before the next ring may start; a failure in that time halts the fleet.
    :ivar failure_budget: how many of its cells may fail (roll back) before the fleet halts.
    :ivar on_failure: past the budget, ``stop`` starting cells (those running finish), or ``finish``
        every cell of the ring first; either way no later ring starts.
    :ivar approval: the ring starts only once a person approved it (``--approve RING``).
    :ivar verify_seconds: how long each cell's ``verify`` phase watches with only the release serving.
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"))
    concurrency: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    bake_seconds: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    failure_budget: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    on_failure: str = attrs.field(default="stop", validator=attrs.validators.in_(ON_FAILURE))
    approval: bool = False
    verify_seconds: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))


@attrs.frozen
class Cell:
    """One cell of the fleet: a target, its ring, the version it runs, its window and configuration.

    :ivar base: the upgrade configuration every step of the cell starts from (without ``release``).
    :ivar where: where the cell is described in the fleet file (``cells[3]``), for messages.
    """

    name: str
    ring: str
    version: Version
    base: Mapping[str, Any]
    where: str
    window: Window | None = None


@attrs.frozen
class Fleet:
    """A whole fleet, as :func:`load_fleet` reads it."""

    name: str
    release: Version
    rings: tuple[Ring, ...]
    cells: tuple[Cell, ...]
    state_dir: Path
    stops: tuple[Version, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    source: Path | None = None
    _configs: dict[tuple[str, str], UpgradeConfig] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def journal_path(self) -> Path:
        """The fleet journal."""
        return self.state_dir / "fleet.sqlite"

    def ring(self, name: str) -> Ring:
        """The ring called ``name``."""
        for ring in self.rings:
            if ring.name == name:
                return ring
        raise UsageError(f"fleet {self.name!r} has no ring {name!r} (rings: {', '.join(self.ring_names)})")

    @property
    def ring_names(self) -> list[str]:
        """The rings in order."""
        return [ring.name for ring in self.rings]

    def cell(self, name: str) -> Cell:
        """The cell called ``name``."""
        for cell in self.cells:
            if cell.name == name:
                return cell
        raise UsageError(f"fleet {self.name!r} has no cell {name!r}")

    def cells_of(self, ring: str) -> list[Cell]:
        """The cells of ``ring``, in the file's order."""
        return [cell for cell in self.cells if cell.ring == ring]

    def path_of(self, cell: Cell) -> list[Version]:
        """Every version ``cell`` goes through, the release last (empty when it runs the release).

        One minor version at a time, as :func:`zdu.policy.check_upgrade_path` allows; an intermediate
        minor is the highest of ``fleet.stops`` in that minor, else its ``.0``.
        """
        return _path(cell.version, self.release, self.stops)

    def config_of(self, cell: Cell, to_version: Version, manager: ZduPluginManager) -> UpgradeConfig:
        """The upgrade configuration of ``cell``'s step to ``to_version`` (checked, and cached)."""
        path = [cell.version, *self.path_of(cell)]
        if to_version not in path[1:]:
            raise UsageError(
                f"{to_version} is not on cell {cell.name!r}'s path ({' -> '.join(map(str, path))})"
            )
        key = (cell.name, str(to_version))
        if key not in self._configs:
            from_version = path[path.index(to_version) - 1]
            self._configs[key] = _load_cell_config(
                cell, self.raw_config(cell, from_version, to_version), manager
            )
        return self._configs[key]

    def raw_config(self, cell: Cell, from_version: Version, to_version: Version) -> dict[str, Any]:
        """The configuration mapping of one step (what ``zdu fleet config`` writes as TOML)."""
        raw = copy.deepcopy(dict(cell.base))
        raw["target"] = {**raw.get("target", {}), "name": cell.name, "version": str(from_version)}
        raw["release"] = {"version": str(to_version)}
        return raw

    def next_start(self, cell: Cell, now: dt.datetime) -> dt.datetime:
        """The first moment from ``now`` when ``cell`` may start: inside its window, outside freezes."""
        moment = now
        for _ in range(1000):
            if cell.window is not None:
                moment = cell.window.next_open(moment)
            freeze = next((f for f in self.freezes if f.contains(moment)), None)
            if freeze is None:
                return moment
            moment = freeze.end
        raise UsageError(f"cell {cell.name!r}: its window never opens outside the change freezes")

    def may_start(self, cell: Cell, now: dt.datetime) -> bool:
        """Whether ``cell`` may start at ``now``."""
        return self.next_start(cell, now) == now

    def freeze_at(self, now: dt.datetime) -> Freeze | None:
        """The freeze in force at ``now``, if any."""
        return next((f for f in self.freezes if f.contains(now)), None)


def _path(current: Version, release: Version, stops: tuple[Version, ...]) -> list[Version]:
    if current > release:
        raise PreflightError(f"runs {current}, newer than fleet.release {release}: zdu upgrades forward only")
    path: list[Version] = []
    while current < release:
        series = next_minor(current)
        if release.minor_series in (current.minor_series, series):
            step = release
        else:
            candidates = [s for s in stops if s.minor_series == series]
            step = max(candidates) if candidates else Version.parse(f"{series[0]}.{series[1]}.0")
        check_upgrade_path(current, step)
        path.append(step)
        current = step
    return path


def is_required_stop(version: Version) -> bool:
    """Whether ``version``'s minor is one of GitLab's required upgrade stops."""
    return version.minor in REQUIRED_STOP_MINORS


def _load_cell_config(cell: Cell, raw: Mapping[str, Any], manager: ZduPluginManager) -> UpgradeConfig:
    try:
        return load_config(raw, manager)
    except ConfigError as error:
        raise ConfigError([f"{cell.where} ({cell.name}): {problem}" for problem in error.problems]) from None


# -- loading ---------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _absolute_state_dir(raw: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Make ``upgrade.state_dir`` absolute, relative to the file that named it."""
    upgrade = raw.get("upgrade")
    if isinstance(upgrade, dict) and isinstance(upgrade.get("state_dir"), str):
        state_dir = Path(upgrade["state_dir"]).expanduser()
        if not state_dir.is_absolute():
            upgrade["state_dir"] = str((directory / state_dir).resolve())
    return raw


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what}: file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{what}: {path}: not valid TOML: {error}") from None


def load_fleet(source: Path | str, manager: ZduPluginManager, *, check_cells: bool = True) -> Fleet:
    """Read and check a fleet file; raise :class:`~zdu.errors.ConfigError` listing every problem.

    :param check_cells: also load every cell's first upgrade configuration through
        :func:`zdu.config.load_config` (names of platforms, strategies, probes and their options).
    """
    path = Path(source).resolve()
    raw = _read_toml(path, "fleet")
    directory = path.parent
    problems: list[str] = []
    for key in raw:
        if key not in ("fleet", "defaults", "rings", "cells"):
            problems.append(f"{key}: unknown section (known: fleet, defaults, rings, cells)")

    head = raw.get("fleet")
    if not isinstance(head, dict):
        raise ConfigError("fleet: required section missing ([fleet] with name and release)")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"fleet.name: expected a name, got {name!r}")
    release = _version_field(head.get("release"), "fleet.release", problems)
    stops = tuple(
        v
        for index, text in enumerate(_list(head.get("stops", []), "fleet.stops", problems))
        if (v := _version_field(text, f"fleet.stops[{index}]", problems)) is not None
    )
    state_dir = (
        Path(head.get("state_dir", ".zdu-fleet")) if isinstance(head.get("state_dir", ""), str) else None
    )
    if state_dir is None:
        problems.append(f"fleet.state_dir: expected a path, got {head.get('state_dir')!r}")
        state_dir = Path(".zdu-fleet")
    state_dir = state_dir.expanduser()
    if not state_dir.is_absolute():
        state_dir = directory / state_dir
    freezes = _freezes(head.get("freeze", []), problems)
    for key in head:
        if key not in ("name", "release", "stops", "state_dir", "freeze"):
            problems.append(f"fleet.{key}: unknown field (known: name, release, stops, state_dir, freeze)")

    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(f"defaults: expected a table, got {defaults!r}")
        defaults = {}
    for key in defaults:
        if key not in _CELL_SECTIONS:
            problems.append(f"defaults.{key}: unknown section (known: {', '.join(_CELL_SECTIONS)})")
    defaults = _absolute_state_dir(copy.deepcopy(defaults), directory)

    rings: list[Ring] = []
    for index, ring_raw in enumerate(_list(raw.get("rings"), "rings", problems, required=True)):
        try:
            table = _table(ring_raw, f"rings[{index}]")
            ranges = _ring_ranges(table, f"rings[{index}]")
            if ranges:
                problems.extend(ranges)
                continue
            rings.append(structure(table, Ring, f"rings[{index}]"))
        except ConfigError as error:
            problems.extend(error.problems)
    names = [
        r["name"] for r in raw.get("rings") or [] if isinstance(r, dict) and isinstance(r.get("name"), str)
    ]
    for ring_name in {n for n in names if names.count(n) > 1}:
        problems.append(f"rings: ring {ring_name!r} is named twice")

    cells: list[Cell] = []
    for index, cell_raw in enumerate(_list(raw.get("cells"), "cells", problems, required=True)):
        cells.extend(_cells(index, cell_raw, defaults, directory, names, problems))
    seen: set[str] = set()
    for cell in cells:
        if cell.name in seen:
            problems.append(f"{cell.where}.name: cell {cell.name!r} is named twice")
        seen.add(cell.name)
    if not isinstance(name, str) or release is None:
        raise ConfigError(problems)
    fleet = Fleet(
        name=name,
        release=release,
        rings=tuple(rings),
        cells=tuple(cells),
        state_dir=state_dir.resolve(),
        stops=stops,
        freezes=tuple(freezes),
        source=path,
    )
    for cell in cells:
        try:
            steps = fleet.path_of(cell)
        except (PreflightError, VersionError) as error:
            problems.append(f"{cell.where}.version ({cell.name}): {error}")
            continue
        if check_cells and steps:
            try:
                fleet.config_of(cell, steps[0], manager)
            except ConfigError as error:
                problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return fleet


_RING_RANGES: dict[str, tuple[type | tuple[type, ...], float, str]] = {
    "concurrency": (int, 1, "a whole number >= 1"),
    "failure_budget": (int, 0, "a whole number >= 0"),
    "bake_seconds": ((int, float), 0, "seconds >= 0"),
    "verify_seconds": ((int, float), 0, "seconds >= 0"),
}


def _ring_ranges(table: Mapping[str, Any], where: str) -> list[str]:
    """Values of the right type but out of range, named by field (the types are cattrs' to check)."""
    problems = []
    for key, (kind, least, expected) in _RING_RANGES.items():
        value = table.get(key)
        if (
            isinstance(value, int | float)
            and isinstance(value, kind)
            and not isinstance(value, bool)
            and value < least
        ):
            problems.append(f"{where}.{key}: expected {expected}, got {value!r}")
    on_failure = table.get("on_failure", "stop")
    if isinstance(on_failure, str) and on_failure not in ON_FAILURE:
        problems.append(f"{where}.on_failure: expected one of {', '.join(ON_FAILURE)}, got {on_failure!r}")
    name = table.get("name")
    if isinstance(name, str) and not re.match(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$", name):
        problems.append(
            f"{where}.name: {name!r} is not a ring name (lowercase letters, digits, '.', '_', '-')"
        )
    return problems


def _version_field(value: object, where: str, problems: list[str]) -> Version | None:
    if not isinstance(value, str):
        problems.append(f"{where}: expected a version such as '16.6.0', got {value!r}")
        return None
    try:
        return Version.parse(value)
    except VersionError as error:
        problems.append(f"{where}: {error}")
        return None


def _list(value: object, where: str, problems: list[str], *, required: bool = False) -> list[Any]:
    if value is None:
        if required:
            problems.append(f"{where}: required, as a list of tables ([[{where}]])")
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list ([[{where}]] tables), got {value!r}")
        return []
    if required and not value:
        problems.append(f"{where}: at least one is needed")
    return value


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _freezes(value: object, problems: list[str]) -> list[Freeze]:
    freezes = []
    for index, item in enumerate(_list(value, "fleet.freeze", problems)):
        where = f"fleet.freeze[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a table, got {item!r}")
            continue
        moments = []
        for key in ("start", "end"):
            moment = item.get(key)
            if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
                problems.append(
                    f"{where}.{key}: expected a date-time with offset (2026-12-21T00:00:00Z), got {moment!r}"
                )
            else:
                moments.append(moment.astimezone(dt.UTC))
        reason = item.get("reason", "")
        if not isinstance(reason, str):
            problems.append(f"{where}.reason: expected a string, got {reason!r}")
        for key in item:
            if key not in ("start", "end", "reason"):
                problems.append(f"{where}.{key}: unknown field (known: start, end, reason)")
        if len(moments) == 2:
            if moments[1] <= moments[0]:
                problems.append(
                    f"{where}.end: {moments[1].isoformat()} is not after start {moments[0].isoformat()}"
                )
            else:
                freezes.append(Freeze(moments[0], moments[1], reason if isinstance(reason, str) else ""))
    return freezes


def _cells(
    index: int,
    raw: object,
    defaults: dict[str, Any],
    directory: Path,
    rings: list[str],
    problems: list[str],
) -> list[Cell]:
    where = f"cells[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {raw!r}")
        return []
    before = len(problems)
    for key in raw:
        if key not in _CELL_FIELDS:
            problems.append(f"{where}.{key}: unknown field (known: {', '.join(_CELL_FIELDS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.name: expected a name, got {name!r}")
    ring = raw.get("ring")
    if ring not in rings:
        problems.append(f"{where}.ring: {ring!r} is not a ring (rings: {', '.join(rings) or 'none'})")
    count = raw.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        problems.append(f"{where}.count: expected a whole number >= 1, got {count!r}")
        count = 1
    window = None
    if "window" in raw:
        text = raw["window"]
        try:
            if not isinstance(text, str):
                raise ValueError(f"expected a window such as 'sat,sun 22:00-02:00', got {text!r}")
            window = Window.parse(text)
        except ValueError as error:
            problems.append(f"{where}.window: {error}")
    base = defaults
    if "config" in raw:
        if not isinstance(raw["config"], str):
            problems.append(f"{where}.config: expected a path, got {raw['config']!r}")
        else:
            config_path = (directory / raw["config"]).resolve()
            try:
                base = _absolute_state_dir(_read_toml(config_path, f"{where}.config"), config_path.parent)
            except ConfigError as error:
                problems.extend(error.problems)
            base.pop("release", None)
    overrides = {key: raw[key] for key in _CELL_SECTIONS if key in raw}
    base = _merge(base, _absolute_state_dir(copy.deepcopy(overrides), directory))
    version_text = raw.get("version", base.get("target", {}).get("version"))
    version = _version_field(version_text, f"{where}.version", problems)
    if len(problems) > before:
        return []
    assert isinstance(name, str) and isinstance(ring, str) and version is not None
    names = [name] if count == 1 and "{" not in name else []
    if not names:
        try:
            names = [name.format(index=n) for n in range(count)]
        except (KeyError, IndexError, ValueError) as error:
            problems.append(f"{where}.name: {name!r} is not a pattern of {{index}}: {error}")
            return []
        if len(set(names)) != count:
            problems.append(f"{where}.name: {name!r} gives the same name to several of its {count} cells")
            return []
    return [Cell(name=n, ring=ring, version=version, base=base, where=where, window=window) for n in names]
