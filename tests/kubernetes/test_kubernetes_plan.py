"""``zdu plan`` against the cluster changes nothing: every write is a server dry run (``dryRun=All``).

The plan of an upgrade with ``gitlab-rake`` migrations runs the runner's status commands, which on
Kubernetes are Jobs (with webservice and sidekiq paused around them): each is sent for the API server
to validate and admit, and nothing is stored, so nothing runs and nothing is paused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zdu.cli import cli
from zdu.errors import PlatformError

from .conftest import FROM, TO, platform_options, upgrade_for
from .stand_in_apiserver import StandInApiServer

MIGRATIONS = {"name": "gitlab-rake", "timeout": 20}


def _quiet_state(server: StandInApiServer) -> str:
    """The stand-in's objects, once its controllers have stopped writing (byte for byte)."""
    while True:
        with server.lock:
            version = server.version
        time.sleep(0.3)
        with server.lock:
            if server.version == version:
                return json.dumps(sorted(server.objects.items()), sort_keys=True)


def test_an_online_plan_sends_every_write_as_a_dry_run_and_changes_nothing(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    ran = apiserver.capture_jobs()
    before = _quiet_state(apiserver)
    upgrade = upgrade_for(apiserver, tmp_path, migrations=MIGRATIONS)
    plan = upgrade.plan()
    upgrade.close()
    assert plan.steps and plan.from_version == FROM and plan.to_version == TO
    # it did write: the status commands' Jobs and the pauses around them, each only checked
    kinds = {(method, kind) for method, kind, _, _ in apiserver.writes}
    assert ("POST", "Job") in kinds and ("PUT", "Deployment") in kinds
    assert all(dry for _, _, _, dry in apiserver.writes), apiserver.writes
    # and nothing changed: no Job ran, nothing is paused, the objects are byte for byte the same
    assert ran == [] and apiserver.list("Job") == []
    assert _quiet_state(apiserver) == before


def test_a_plan_reports_what_the_api_server_refuses(apiserver: StandInApiServer, tmp_path: Path) -> None:
    def policy(method: str, obj: dict[str, Any]) -> str | None:
        if obj["kind"] != "Job":
            return None
        images = [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]]
        if all(image.startswith("registry.internal.example/") for image in images):
            return None
        return f"images must come from registry.internal.example, not {images[0]}"

    apiserver.admission = policy
    before = _quiet_state(apiserver)
    config = tmp_path / "cell.toml"
    config.write_text(
        f"""
[target]
name = "cell"
platform = "kubernetes"
version = "{FROM}"
[release]
version = "{TO}"
[platform]
{chr(10).join(f"{key} = {json.dumps(value)}" for key, value in platform_options(apiserver).items())}
[strategy]
name = "rolling"
[migrations]
name = "gitlab-rake"
timeout = 20
[upgrade]
state_dir = "{tmp_path / "state"}"
"""
    )
    result = CliRunner().invoke(cli, ["plan", str(config)])
    assert result.exit_code != 0
    message = str(result.exception) if result.exception else result.output
    assert 'admission webhook "policy.stand-in.example" denied the request' in message, message
    assert "images must come from registry.internal.example" in message
    assert _quiet_state(apiserver) == before


def test_an_invalid_object_in_a_dry_run_is_the_api_servers_422(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    toolbox = apiserver.get("Deployment", "gitlab-toolbox")
    assert toolbox is not None
    # a template the chart could not have written (the stand-in accepted it as a seed)
    toolbox["spec"]["template"]["spec"]["initContainers"][1]["name"] = "Configure_Step"
    apiserver.put(toolbox)
    before = _quiet_state(apiserver)
    upgrade = upgrade_for(apiserver, tmp_path, migrations=MIGRATIONS)
    with pytest.raises(
        PlatformError, match=r"422 Invalid: Job.batch .* is invalid: .*initContainers\[1\]\.name"
    ):
        upgrade.plan()
    upgrade.close()
    assert _quiet_state(apiserver) == before
    assert apiserver.writes and all(dry for _, _, _, dry in apiserver.writes)
