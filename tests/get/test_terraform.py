"""Real terraform (only the built-in terraform_data resource: no provider download)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from zdu_get.terraform import TerraformPlanRefused, TerraformRunner

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")

IN_PLACE = """
variable "gitlab_version" { type = string }
resource "terraform_data" "rails" { input = var.gitlab_version }
"""

REPLACING = """
variable "gitlab_version" { type = string }
resource "terraform_data" "rails" { input = var.gitlab_version }
resource "terraform_data" "gitaly_disk" { triggers_replace = var.gitlab_version }
"""


def state_of(directory):
    shown = subprocess.run(
        ["terraform", "show", "-json"], cwd=directory, capture_output=True, text=True, check=True
    )
    resources = json.loads(shown.stdout).get("values", {}).get("root_module", {}).get("resources", [])
    return {r["address"]: r["values"] for r in resources}


def runner(tmp_path, module, version, allow=()):
    directory = tmp_path / "terraform"
    directory.mkdir(exist_ok=True)
    (directory / "main.tf").write_text(module, encoding="utf-8")
    return TerraformRunner(
        directory=directory,
        plan_file=tmp_path / "plans" / f"{version}.tfplan",
        variables={"gitlab_version": version},
        allow=allow,
    )


def test_init_works_offline_with_the_builtin_resource(tmp_path):
    terraform = runner(tmp_path, IN_PLACE, "16.5.0")
    changes = terraform.plan()  # runs terraform init first
    assert [(c.address, c.actions) for c in changes] == [("terraform_data.rails", ("create",))]
    assert not (terraform.directory / ".terraform" / "providers").exists()


def test_an_in_place_change_not_allow_listed_is_refused_and_nothing_is_applied(tmp_path):
    first = runner(tmp_path, IN_PLACE, "16.5.0")
    first.apply_saved_plan() if first.plan() else None
    before = state_of(first.directory)
    second = runner(tmp_path, IN_PLACE, "16.6.0", allow=("terraform_data.gitaly*",))
    changes = second.plan()
    with pytest.raises(TerraformPlanRefused, match=r"terraform_data\.rails \(update\), not in"):
        second.refuse_destruction(changes)
    assert state_of(second.directory) == before


def test_an_allow_listed_in_place_change_is_applied_from_the_saved_plan(tmp_path):
    first = runner(tmp_path, IN_PLACE, "16.5.0")
    first.apply_saved_plan() if first.plan() else None
    second = runner(tmp_path, IN_PLACE, "16.6.0", allow=("terraform_data.r*",))
    changes = second.plan()
    assert [(c.address, c.actions) for c in changes] == [("terraform_data.rails", ("update",))]
    second.refuse_destruction(changes)  # an allow-listed update is fine
    second.apply_saved_plan()
    assert state_of(second.directory)["terraform_data.rails"]["input"] == "16.6.0"


def test_a_plan_that_would_replace_is_refused_naming_the_resource_and_nothing_is_applied(tmp_path):
    first = runner(tmp_path, REPLACING, "16.5.0")
    first.plan()
    first.apply_saved_plan()
    before = state_of(first.directory)
    second = runner(tmp_path, REPLACING, "16.6.0")
    changes = second.plan()
    with pytest.raises(
        TerraformPlanRefused, match=r"terraform_data\.gitaly_disk \(delete/create\)"
    ) as refused:
        second.refuse_destruction(changes)
    assert "terraform_data.rails" not in str(refused.value)  # an in-place update is not named
    assert state_of(second.directory) == before
