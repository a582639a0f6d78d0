"""Every object zdu would send, validated against the Kubernetes OpenAPI schemas (kubernetes-validate).

The objects come from ``zdu plan --offline`` (the command line, as a reviewer runs it) for every
strategy and layer, plus the migrations Job and the Lease, which a plan does not write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from click.testing import CliRunner

from zdu.cli import cli
from zdu.model import Version
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.jobs import migration_job
from zdu_kubernetes.lease import lease_object

from .conftest import FROM, TO, chart_objects

#: the Kubernetes minor version the objects are checked against (GitLab's charts support it)
KUBERNETES_VERSION = "1.30.0"


def _validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _plan(tmp_path: Path, strategy: str, layers: list[str], options: str = "") -> list[dict[str, Any]]:
    snapshot = tmp_path / "state.json"
    snapshot.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": chart_objects(service_upstream=False)})
    )
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
namespace = "gitlab"
preview_host = "preview.gitlab.example.com"
[strategy]
name = "{strategy}"
layers = {json.dumps(layers)}
{options}
[upgrade]
state_dir = "{tmp_path / "state"}"
"""
    )
    result = CliRunner().invoke(cli, ["plan", str(config), "--offline", str(snapshot), "--json"])
    assert result.exit_code == 0, result.output
    changes: list[dict[str, Any]] = json.loads(result.output)
    return changes


@pytest.mark.parametrize(
    ("strategy", "layers", "options"),
    [
        ("rolling", ["sticky-nginx"], ""),
        ("rolling", ["assets-shim"], ""),
        ("blue-green", ["sticky-nginx", "assets-shim"], "scale_down_delay = 30"),
    ],
)
def test_every_planned_object_passes_the_schemas(
    tmp_path: Path, strategy: str, layers: list[str], options: str
) -> None:
    changes = _plan(tmp_path, strategy, layers, options)
    assert changes
    for change in changes:
        _validate(change)
    kinds = {(c["kind"], c["metadata"]["annotations"]["zdu.gitlab.com/planned-action"]) for c in changes}
    assert ("Deployment", "create") in kinds and ("Service", "replace") in kinds
    if "assets-shim" in layers:
        assert ("Ingress", "create") in kinds and ("Ingress", "delete") in kinds
    if "sticky-nginx" in layers:
        annotated = [
            c
            for c in changes
            if c["kind"] == "Ingress"
            and "nginx.ingress.kubernetes.io/affinity" in c["metadata"]["annotations"]
        ]
        assert annotated


def test_the_plan_names_the_new_images(tmp_path: Path) -> None:
    changes = _plan(tmp_path, "rolling", [])
    created = [
        c
        for c in changes
        if c["kind"] == "Deployment"
        and c["metadata"]["annotations"]["zdu.gitlab.com/planned-action"] == "create"
    ]
    assert [c["metadata"]["name"] for c in created] == ["gitlab-webservice-default-v16-6-0"]
    images = [container["image"] for container in created[0]["spec"]["template"]["spec"]["containers"]]
    assert all(image.endswith(f":v{TO}") for image in images)


def test_a_schema_violation_is_caught() -> None:
    bad = chart_objects()[0]
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)


def test_the_migrations_job_and_the_lease_pass_the_schemas() -> None:
    toolbox = chart_objects()[2]
    job = migration_job(
        "zdu-migrations-0a1b2c3d",
        "cell",
        "registry.gitlab.com/gitlab-org/build/cng/gitlab-toolbox-ee:v16.6.0",
        ["gitlab-rake", "db:migrate"],
        {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true", "REMOVED": None},
        toolbox["spec"]["template"],
        Version.parse(TO),
        KubernetesPlatformConfig(),
    )
    assert [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]] == [
        "certificates",
        "configure",
    ]
    _validate(job)
    _validate(lease_object("zdu-cell", "gitlab", "zdu pid 1 on runner", 60))
