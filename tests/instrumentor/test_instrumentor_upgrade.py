"""``instrumentor`` end to end: `zdu upgrade` runs the stand-in's stages, which upgrade through Ansible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.get.conftest import FROM, TO, requires_haproxy
from zdu_get.node import read_node

pytestmark = [pytest.mark.slow, requires_haproxy]

STAND_IN = Path(__file__).parent / "stand_in_instrumentor.py"

MODEL = (
    '{\n  "tenant_id": "c0ffee",\n  "reference_architecture": "3k",\n'
    f'  "gitlab_version": "{FROM}",\n  "unknown_team_field": {{"keep": ["me", 1]}},\n'
    '  "enable_fips": false\n}\n'
)


def write_config(tmp_path, fleet, *faults, timeouts=None):
    model = tmp_path / "tenant.json"
    model.write_text(MODEL, encoding="utf-8")
    command = [
        sys.executable,
        str(STAND_IN),
        "{stage}",
        "{tenant_model}",
        "--inventory",
        str(fleet.inventory),
        "--ansible-dir",
        str(fleet.ansible_dir),
        *faults,
    ]
    lines = [
        "[target]",
        'name = "tenant"',
        'platform = "get"',
        f'version = "{FROM}"',
        "[platform]",
        *(f"{k} = {json.dumps(v)}" for k, v in fleet.platform_options().items()),
        "[release]",
        f'version = "{TO}"',
        "[strategy]",
        'name = "instrumentor"',
        f"tenant_model = {json.dumps(str(model))}",
        f"command = {json.dumps(command)}",
        'stages = ["validate", "configure"]',
    ]
    if timeouts:
        lines += ["[strategy.timeouts]", *(f"{k} = {v}" for k, v in timeouts.items())]
    lines += ["[upgrade]", f"state_dir = {json.dumps(str(tmp_path / 'state'))}"]
    config = tmp_path / "tenant.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config, model


def zdu(*arguments):
    return subprocess.run(
        [str(Path(sys.executable).parent / "zdu"), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_stages_upgrade_the_fleet_and_the_model_changes_by_its_version_only(make_fleet, tmp_path):
    fleet = make_fleet(rails=("rails-1", "rails-2"))
    config, model = write_config(tmp_path, fleet)
    done = zdu("upgrade", config, "--json")
    assert done.returncode == 0, done.stderr
    assert all(read_node(fleet.directory, n).version == TO for n in fleet.rails)
    assert model.read_text() == MODEL.replace(f'"gitlab_version": "{FROM}"', f'"gitlab_version": "{TO}"')
    assert (tmp_path / "tenant.json.previous").read_text() == MODEL


@pytest.mark.parametrize(
    ("faults", "timeouts", "stage", "why"),
    [
        (["--fail-stage", "configure", "--at-version", TO], None, "configure", "failed (exit 3)"),
        (
            ["--hang-stage", "validate", "--at-version", TO],
            {"validate": 1.0},
            "validate",
            "timed out after 1s",
        ),
    ],
)
def test_a_stage_that_fails_or_times_out_stops_the_upgrade_naming_the_stage(
    make_fleet, tmp_path, faults, timeouts, stage, why
):
    fleet = make_fleet(rails=("rails-1", "rails-2"))
    config, model = write_config(tmp_path, fleet, *faults, timeouts=timeouts)
    done = zdu("upgrade", config, "--json")
    assert done.returncode != 0
    report = json.loads(done.stdout)
    assert report["status"] == "rolled_back"
    assert f"stage {stage} {why}" in report["error"]
    assert model.read_bytes() == MODEL.encode()  # the inverse patch, byte for byte
    # the new version never got to the nodes; the rollback's stages ran at the old version
    assert all(read_node(fleet.directory, n).version == FROM for n in fleet.rails)
    stages = [line for line in done.stderr.splitlines() if "instrumentor stage" in line]
    assert stages[-2:] == ["  instrumentor stage validate", "  instrumentor stage configure"], done.stderr
