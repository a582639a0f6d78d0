"""The fleet file: rings, cells, windows, freezes, paths with required stops; errors name field and value."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.fleet.conftest import write_fleet, zdu
from zdu.errors import ConfigError
from zdu.fleet import Window, load_fleet
from zdu.model import Version
from zdu.registry import get_plugin_manager

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_window_days_ranges_and_midnight():
    window = Window.parse("sat,sun 22:00-02:00")
    assert window.contains(at("2026-12-05T23:30"))  # a Saturday night
    assert window.contains(at("2026-12-06T01:59"))  # Sunday, still Saturday's window
    assert window.contains(at("2026-12-07T01:00"))  # Monday, Sunday's window past midnight
    assert not window.contains(at("2026-12-07T02:00"))
    assert not window.contains(at("2026-12-04T23:00"))  # a Friday
    assert window.next_open(at("2026-12-02T12:00")) == at("2026-12-05T22:00")
    weekdays = Window.parse("mon-fri 01:00-05:00")
    assert weekdays.days == frozenset(range(5))
    assert Window.parse("daily 00:00-24:00").contains(at("2026-12-02T12:34"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sat 22:00", "not a weekly window"),
        ("fun 01:00-02:00", "'fun' is not a day"),
        ("mon 25:00-26:00", "not a time"),
    ],
)
def test_bad_window(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        Window.parse(text)


def test_paths_go_one_minor_at_a_time_through_required_stops(tmp_path):
    fleet_file = write_fleet(
        tmp_path,
        [{"name": "ring-0"}],
        [
            {"name": "old", "ring": "ring-0", "version": "16.1.3"},
            {"name": "current", "ring": "ring-0", "version": "16.5.0"},
            {"name": "done", "ring": "ring-0", "version": "16.6.0"},
        ],
        fleet={"stops": ["16.2.9", "16.5.4"]},
    )
    fleet = load_fleet(fleet_file, get_plugin_manager())
    old = [str(v) for v in fleet.path_of(fleet.cell("old"))]
    assert old == ["16.2.9", "16.3.0", "16.4.0", "16.5.4", "16.6.0"]
    assert [str(v) for v in fleet.path_of(fleet.cell("current"))] == ["16.6.0"]
    assert fleet.path_of(fleet.cell("done")) == []
    config = fleet.config_of(fleet.cell("old"), Version.parse("16.3.0"), get_plugin_manager())
    assert (str(config.target.version), str(config.release.version)) == ("16.2.9", "16.3.0")

    plan = json.loads(zdu("fleet", "plan", str(fleet_file), "--json", check=0).stdout)
    (cell,) = [c for c in plan["rings"][0]["cells"] if c["cell"] == "old"]
    assert cell["required_stops"] == ["16.2.9", "16.5.4"]


def test_plan_tells_when_each_cell_starts_around_windows_and_freezes(tmp_path):
    freeze = '[[fleet.freeze]]\nstart = 2026-12-05T00:00:00Z\nend = 2026-12-06T12:00:00Z\nreason = "launch"\n'
    fleet_file = write_fleet(
        tmp_path,
        [{"name": "ring-0"}],
        [
            {"name": "weekend", "ring": "ring-0", "window": "sat,sun 22:00-02:00"},
            {"name": "anytime", "ring": "ring-0"},
        ],
        extra=freeze,
    )
    plan = json.loads(
        zdu("fleet", "plan", str(fleet_file), "--json", "--now", "2026-12-02T12:00:00Z", check=0).stdout
    )
    starts = {c["cell"]: c["next_start"] for c in plan["rings"][0]["cells"]}
    assert starts["anytime"] == "2026-12-02T12:00:00+00:00"
    # Saturday 22:00 falls inside the freeze: Sunday 22:00 is the first opening after it
    assert starts["weekend"] == "2026-12-06T22:00:00+00:00"
    assert plan["freezes"][0]["reason"] == "launch"


def test_bad_fields_are_named_with_their_values_and_exit_2(tmp_path):
    fleet_file = write_fleet(
        tmp_path,
        [{"name": "ring-0", "concurrency": 0}, {"name": "ring-1", "on_failure": "explode"}],
        [
            {"name": "a", "ring": "ring-9"},
            {"name": "b", "ring": "ring-1", "window": "someday"},
            {"name": "c", "ring": "ring-1", "version": "17.0.0"},
            {"name": "d", "ring": "ring-1", "platform": {"replicas": "three"}},
        ],
    )
    with pytest.raises(ConfigError) as raised:
        load_fleet(fleet_file, get_plugin_manager())
    text = "\n".join(raised.value.problems)
    assert "rings[0].concurrency" in text and "0" in text
    assert "rings[1].on_failure" in text and "explode" in text
    assert "cells[0].ring: 'ring-9' is not a ring" in text
    assert "cells[1].window" in text and "someday" in text
    result = zdu("fleet", "plan", str(fleet_file), check=2)
    assert "cells[1].window" in result.stderr
    fixed = write_fleet(
        tmp_path,
        [{"name": "ring-0"}],
        [
            {"name": "c", "ring": "ring-0", "version": "17.0.0"},
            {"name": "d", "ring": "ring-0", "platform": {"replicas": "three"}},
        ],
    )
    with pytest.raises(ConfigError) as raised:
        load_fleet(fixed, get_plugin_manager())
    text = "\n".join(raised.value.problems)
    assert "cells[0].version (c)" in text and "17.0.0" in text
    assert "cells[1] (d): platform.replicas: expected an integer, got 'three'" in text


def test_cell_patterns_expand_and_duplicates_are_refused(tmp_path):
    fleet_file = write_fleet(
        tmp_path, [{"name": "ring-0"}], [{"name": "sim-{index:03d}", "ring": "ring-0", "count": 12}]
    )
    fleet = load_fleet(fleet_file, get_plugin_manager())
    assert [c.name for c in fleet.cells][:2] == ["sim-000", "sim-001"] and len(fleet.cells) == 12
    twice = write_fleet(tmp_path, [{"name": "ring-0"}], [{"name": "same", "ring": "ring-0", "count": 2}])
    with pytest.raises(ConfigError, match="same"):
        load_fleet(twice, get_plugin_manager())


def test_a_cell_may_reference_its_own_configuration_file(tmp_path):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "tenant.toml").write_text(
        '[target]\nname = "renamed-by-the-fleet"\nplatform = "sim"\nversion = "16.4.1"\n'
        "[platform]\nreplicas = 3\ntime_scale = 0.01\n"
        '[release]\nversion = "16.5.0"\n'
        '[strategy]\nname = "blue-green"\n'
        '[upgrade]\nstate_dir = "state"\n'
    )
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text(
        '[fleet]\nname = "f"\nrelease = "16.6.0"\n'
        '[[rings]]\nname = "ring-0"\n'
        '[[cells]]\nname = "tenant"\nring = "ring-0"\nconfig = "cells/tenant.toml"\n'
        "platform = { replicas = 4 }\n"
    )
    manager = get_plugin_manager()
    fleet = load_fleet(fleet_file, manager)
    cell = fleet.cell("tenant")
    assert [str(v) for v in fleet.path_of(cell)] == ["16.5.0", "16.6.0"]  # its version is the file's
    config = fleet.config_of(cell, Version.parse("16.6.0"), manager)
    assert config.target.name == "tenant" and str(config.target.version) == "16.5.0"
    assert config.strategy.name == "blue-green"
    assert config.platform.options.replicas == 4 and config.platform.options.time_scale == 0.01
    assert config.state_dir == (tmp_path / "cells" / "state").resolve()  # relative to the cell's file
