import subprocess
import sys
from pathlib import Path

import pytest

from zdu.config import load_config
from zdu.errors import ConfigError

ZDU = str(Path(sys.executable).parent / "zdu")

GOOD = """
[target]
name = "uat-cell-1"
platform = "local"
version = "16.5.0"

[platform]
replicas = 2

[release]
version = "16.6.0"

[strategy]
name = "rolling"
max_surge = 2

[[probes]]
name = "http"
rps = 50
failure_limit = 1
headers = { PRIVATE-TOKEN = "glpat-secret-value" }
"""


def test_a_good_config_is_structured_into_typed_options(tmp_path, zdu_plugin_manager):
    path = tmp_path / "cell.toml"
    path.write_text(GOOD)
    config = load_config(path, zdu_plugin_manager)
    assert config.target.name == "uat-cell-1"
    assert str(config.release.version) == "16.6.0"
    assert config.strategy.options.max_surge == 2
    assert config.platform.options.replicas == 2
    assert config.probes[0].gate.failure_limit == 1
    assert config.probes[0].options.rps == 50.0
    assert "glpat-secret-value" not in repr(config)
    assert "glpat-secret-value" not in repr(config.redacted())


def test_every_bad_field_is_named_with_its_value(zdu_plugin_manager):
    raw = {
        "target": {"name": "Bad Name", "platform": "local", "version": "16.5"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling", "max_surge": "one", "maxunavailable": 1},
        "probes": [{"name": "http", "rps": -5, "failure_limit": -1}, {"name": "nope"}],
        "extra": {},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(raw, zdu_plugin_manager)
    text = "\n".join(caught.value.problems)
    assert "extra: unknown section" in text
    assert "'Bad Name'" in text
    assert "'16.5'" in text
    assert "strategy.max_surge: expected an integer, got 'one'" in text
    assert "strategy: unknown field 'maxunavailable'" in text and "max_unavailable" in text
    assert "rps" in text and "-5" in text
    assert "failure_limit" in text and "-1" in text
    assert "probes[1].name: unknown probe 'nope'; installed: apdex, http, prometheus, qa" in text


def test_unknown_strategy_lists_installed(zdu_plugin_manager):
    raw = {
        "target": {"name": "c", "platform": "local", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "shadow"},
    }
    with pytest.raises(
        ConfigError,
        match=(
            r"strategy\.name: unknown strategy 'shadow'; "
            r"installed: blue-green, canary, get, instrumentor, recreate, rolling"
        ),
    ):
        load_config(raw, zdu_plugin_manager)


def test_missing_file_and_bad_toml_are_usage_errors(tmp_path, zdu_plugin_manager):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", zdu_plugin_manager)
    bad = tmp_path / "bad.toml"
    bad.write_text("[target\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, zdu_plugin_manager)


def test_command_line_bad_config_exits_2_with_one_line_per_field(tmp_path, zdu_state_dir):
    path = tmp_path / "cell.toml"
    path.write_text(GOOD.replace("max_surge = 2", 'max_surge = "2"'))
    for command in (["plan", str(path)], ["upgrade", str(path)]):
        done = subprocess.run([ZDU, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == "zdu: error: strategy.max_surge: expected an integer, got '2'"
        assert done.stdout == ""
    # nothing was recorded: no upgrade started
    done = subprocess.run([ZDU, "status", "--json"], capture_output=True, text=True, timeout=60)
    assert '"upgrades": []' in done.stdout


def test_command_line_bad_arguments_exit_2(tmp_path):
    done = subprocess.run([ZDU, "upgrade"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Missing argument 'CONFIG'" in done.stderr
    done = subprocess.run([ZDU, "status", "--limit", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--limit" in done.stderr


def test_a_relative_state_dir_is_relative_to_the_config_file(tmp_path, zdu_plugin_manager, monkeypatch):
    (tmp_path / "deploy").mkdir()
    path = tmp_path / "deploy" / "cell.toml"
    path.write_text(GOOD + '\n[upgrade]\nstate_dir = ".zdu"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("deploy/cell.toml"), zdu_plugin_manager)
    assert config.state_dir == tmp_path / "deploy" / ".zdu"
    assert config.journal_path.is_absolute() and config.source == path


def test_a_list_option_given_a_number_says_a_list_is_expected(zdu_plugin_manager):
    raw = {
        "target": {"name": "cell", "platform": "sim", "version": "16.5.0"},
        "platform": {"fail_versions": 5},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "canary", "steps": 3},
    }
    with pytest.raises(ConfigError) as refused:
        load_config(raw, zdu_plugin_manager)

    assert refused.value.problems == [
        "platform.fail_versions: expected a list, got 5",
        "strategy.steps: expected a list, got 3",
    ]


def test_a_bad_field_does_not_hide_another_fields_validator(zdu_plugin_manager):
    raw = {
        "target": {"name": "cell", "platform": "sim", "version": "16.5.0"},
        "platform": {"replicas": 0, "start_seconds": "soon"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling", "max_surge": "one", "max_unavailable": -1},
    }
    with pytest.raises(ConfigError) as refused:
        load_config(raw, zdu_plugin_manager)

    assert sorted(refused.value.problems) == [
        "platform.replicas: 'replicas' must be >= 1: 0",
        "platform.start_seconds: expected a number, got 'soon'",
        "strategy.max_surge: expected an integer, got 'one'",
        "strategy.max_unavailable: 'max_unavailable' must be >= 0: -1",
    ]
