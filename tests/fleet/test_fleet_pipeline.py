"""GitLab CI as the engine: the generated pipeline against gitlab-ci-local's schema, and a real run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet.conftest import upgrades_of, write_fleet, zdu
from zdu.fleet import load_fleet
from zdu.fleet_pipeline import pipeline
from zdu.model import UpgradeStatus
from zdu.registry import get_plugin_manager
from zdu.upgrade import current_version
from zdu_local.fleet_demo import LocalCell, start_cells, stop_cells, write_local_fleet

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet-sim.toml"
GITLAB_CI_LOCAL = shutil.which("gitlab-ci-local")
needs_gitlab_ci_local = pytest.mark.skipif(
    GITLAB_CI_LOCAL is None, reason="gitlab-ci-local is not installed (nox -s tests installs it)"
)


def repository(directory: Path, fleet_file: Path, *, zdu_command: str = "zdu") -> Path:
    """A git repository holding the fleet file and its generated pipeline, as a project would."""
    directory.mkdir(parents=True, exist_ok=True)
    if fleet_file.parent != directory:
        shutil.copy(fleet_file, directory / "fleet.toml")
    zdu(
        "fleet",
        "pipeline",
        str(directory / "fleet.toml"),
        "--fleet-path",
        "fleet.toml",
        "--zdu",
        zdu_command,
        "-o",
        str(directory / ".gitlab-ci.yml"),
        check=0,
    )
    git = ["git", "-C", str(directory), "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "fleet.toml", ".gitlab-ci.yml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fleet"], check=True)
    return directory


def gitlab_ci_local(directory: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.run(
        [str(GITLAB_CI_LOCAL), *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "NO_COLOR": "1"},
    )


def test_pipeline_stages_jobs_lanes_approval_and_bake(tmp_path):
    rings = [
        {"name": "ring-0"},
        {"name": "ring-1", "concurrency": 2, "approval": True, "failure_budget": 1, "bake_seconds": 5},
    ]
    cells = [
        {"name": "a", "ring": "ring-0", "version": "16.4.0"},
        *({"name": n, "ring": "ring-1"} for n in ("b", "c", "d")),
    ]
    fleet = load_fleet(write_fleet(tmp_path, rings, cells), get_plugin_manager())
    spec = pipeline(fleet, "fleet.toml")
    assert spec["stages"] == ["ring-0", "ring-0-bake", "ring-1", "ring-1-bake"]
    first, second = spec["upgrade a to 16.5.0"], spec["upgrade a to 16.6.0"]
    assert first["resource_group"] == second["resource_group"] == "zdu-cell-a"
    assert "needs" not in first and second["needs"] == ["upgrade a to 16.5.0"]  # steps in order
    assert second["script"][-1] == "zdu upgrade zdu-a-16.6.0.toml"
    assert spec["approve ring-1"]["when"] == "manual" and spec["approve ring-1"]["allow_failure"] is False
    # concurrency 2: two lanes after the approval, the third cell waits for the first
    assert spec["upgrade b to 16.6.0"]["needs"] == ["approve ring-1"]
    assert spec["upgrade c to 16.6.0"]["needs"] == ["approve ring-1"]
    assert spec["upgrade d to 16.6.0"]["needs"] == ["upgrade b to 16.6.0"]
    assert spec["upgrade d to 16.6.0"]["allow_failure"] is True  # the budget: the bake job judges
    assert "allow_failure" not in first
    assert spec["bake ring-1"] == {"stage": "ring-1-bake", "script": ["zdu fleet bake fleet.toml ring-1"]}
    # the config a job renders is the step's own, as TOML that zdu upgrade reads
    rendered = zdu("fleet", "config", str(tmp_path / "fleet.toml"), "a", "--to", "16.5.0", check=0).stdout
    assert 'version = "16.4.0"' in rendered and '[release]\nversion = "16.5.0"' in rendered


@needs_gitlab_ci_local
def test_the_pipeline_passes_gitlab_ci_local_schema_check(tmp_path):
    project = repository(tmp_path / "big", EXAMPLE)
    result = gitlab_ci_local(project, "--preview")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "json schema validated" in result.stderr + result.stdout
    assert result.stdout.count("resource_group: zdu-cell-") == 1000

    # the negative control: one bad value and the same check refuses the file
    small = repository(
        tmp_path / "small", write_fleet(tmp_path, [{"name": "ring-0"}], [{"name": "a", "ring": "ring-0"}])
    )
    text = (small / ".gitlab-ci.yml").read_text()
    (small / ".gitlab-ci.yml").write_text(
        text.replace('"resource_group": "zdu-cell-a"', '"when": "sometimes"')
    )
    subprocess.run(
        ["git", "-C", str(small), "-c", "user.email=c@e", "-c", "user.name=c", "commit", "-qam", "bad"],
        check=True,
    )
    refused = gitlab_ci_local(small, "--preview")
    assert refused.returncode != 0 and "when" in refused.stdout + refused.stderr


@needs_gitlab_ci_local
@pytest.mark.slow
def test_gitlab_ci_local_upgrades_local_cells_ring_by_ring_and_stops_at_the_failing_one(tmp_path):
    manager = get_plugin_manager()
    cells = [
        LocalCell("cell-a", "ring-0"),
        LocalCell("cell-b", "ring-1", bad=True),
        LocalCell("cell-c", "ring-2"),
    ]
    rings = [{"name": "ring-0", "bake_seconds": 1.0}, {"name": "ring-1"}, {"name": "ring-2"}]
    fleet_file = write_local_fleet(tmp_path / "project", cells, rings, rps=20, clients=2)
    fleet = load_fleet(fleet_file, manager)
    project = repository(tmp_path / "project", fleet_file)
    platforms = start_cells(fleet, manager)
    try:
        result = gitlab_ci_local(project, "--shell-isolation")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-4000:]
        verdicts = {
            job: word for word, job in re.findall(r"^\s*(PASS|FAIL)\s+(.+?)\s*$", output, re.MULTILINE)
        }
        assert verdicts.get("upgrade cell-a to 16.6.0") == "PASS", output[-4000:]
        assert verdicts.get("bake ring-0") == "PASS", output[-4000:]
        assert verdicts.get("upgrade cell-b to 16.6.0") == "FAIL", output[-4000:]
        assert "bake ring-1" not in verdicts and "upgrade cell-c to 16.6.0" not in verdicts
        assert "upgrade cell-c to 16.6.0 starting" not in output

        # what each cell serves, asked of the cells themselves, and what their journals hold
        state = fleet.state_dir
        assert str(current_version(platforms["cell-a"])) == "16.6.0"
        assert str(current_version(platforms["cell-b"])) == "16.5.0"
        assert str(current_version(platforms["cell-c"])) == "16.5.0"
        assert [r.status for r in upgrades_of(state, "cell-a")] == [UpgradeStatus.SUCCEEDED]
        assert [r.status for r in upgrades_of(state, "cell-b")] == [UpgradeStatus.ROLLED_BACK]
        assert upgrades_of(state, "cell-c") == []
    finally:
        stop_cells(platforms)
