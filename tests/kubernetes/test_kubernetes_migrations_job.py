"""The migrations Job as the GitLab chart builds its own: init containers, entrypoint, image, resources.

The chart here runs CE, UBI-flavoured images from a private registry: the Job must take its image from
the toolbox the chart runs (retagged to the release, flavour kept), keep the toolbox's ``configure``
and ``certificates`` init containers (which put the configuration and secrets in place) and its
resources, and pass the command as ``args`` so that the image's own entrypoint runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.config import load_config
from zdu.errors import ConfigError
from zdu.migrations import CommandError
from zdu.model import Target, UpgradeStatus, Version
from zdu.platform import PlatformEnv
from zdu.registry import get_plugin_manager
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.platform import KubernetesPlatform

from .conftest import FROM, TO, chart_objects, platform_options, seed, upgrade_for
from .stand_in_apiserver import StandInApiServer

REGISTRY = "registry.internal.example:5000/gitlab"
TOOLBOX = "gitlab-toolbox"


@pytest.fixture
def private_ubi() -> Iterator[StandInApiServer]:
    """A stand-in seeded with a chart that runs CE, UBI images from a private registry."""
    server = StandInApiServer().start()
    seed(server, chart_objects(registry=REGISTRY, edition="ce", flavour="-ubi"))
    yield server
    server.stop()


def _platform(server: StandInApiServer, tmp_path: Path, **options: Any) -> KubernetesPlatform:
    config = KubernetesPlatformConfig(**platform_options(server, **options))
    env = PlatformEnv(
        target=Target("cell", "kubernetes", FROM), state_dir=tmp_path, release=Version.parse(TO)
    )
    return KubernetesPlatform(config, env)


def test_the_job_is_built_from_the_toolbox_the_chart_runs(
    private_ubi: StandInApiServer, tmp_path: Path
) -> None:
    jobs = private_ubi.capture_jobs("ok\n")
    platform = _platform(private_ubi, tmp_path)
    result = platform.command_executor.run(
        ["gitlab-rake", "db:migrate"], {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"}, 20
    )
    platform.close()
    assert result.returncode == 0
    [job] = jobs
    toolbox = private_ubi.get("Deployment", TOOLBOX)
    assert toolbox is not None
    toolbox_pod = toolbox["spec"]["template"]["spec"]
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    # the toolbox's image, retagged to the release: same registry, repository (CE) and flavour
    assert container["image"] == f"{REGISTRY}/gitlab-toolbox-ce:v{TO}-ubi"
    # the image's own entrypoint runs the command, as in the chart's migrations Job
    assert container["args"] == ["gitlab-rake", "db:migrate"] and "command" not in container
    assert container["resources"] == toolbox_pod["containers"][0]["resources"]
    # the init containers that put configuration and secrets in place, GitLab images retagged
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == ["certificates", "configure"]
    assert init["configure"]["image"] == f"{REGISTRY}/gitlab-base:v{TO}-ubi"
    assert init["certificates"]["image"] == f"{REGISTRY}/certificates:20230911-r0-ubi"  # not a GitLab tag
    assert init["configure"]["command"] == toolbox_pod["initContainers"][1]["command"]
    assert init["configure"]["volumeMounts"] == toolbox_pod["initContainers"][1]["volumeMounts"]
    assert pod["volumes"] == toolbox_pod["volumes"]
    # the chart's own toolbox was not touched
    assert toolbox_pod["initContainers"][1]["image"] == f"{REGISTRY}/gitlab-base:v{FROM}-ubi"


def test_an_upgrade_of_a_ubi_chart_keeps_the_flavour_everywhere(
    private_ubi: StandInApiServer, tmp_path: Path
) -> None:
    jobs = private_ubi.capture_jobs("ok\n")
    upgrade = upgrade_for(
        private_ubi, tmp_path, migrations={"name": "gitlab-rake", "status_command": [], "timeout": 20}
    )
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert {job["spec"]["template"]["spec"]["containers"][0]["image"] for job in jobs} == {
        f"{REGISTRY}/gitlab-toolbox-ce:v{TO}-ubi"
    }
    webservice = private_ubi.get("Deployment", "gitlab-webservice-default")
    sidekiq = private_ubi.get("Deployment", "gitlab-sidekiq-all-in-1-v2")
    assert webservice is not None and sidekiq is not None
    assert [c["image"] for c in webservice["spec"]["template"]["spec"]["containers"]] == [
        f"{REGISTRY}/gitlab-webservice-ce:v{TO}-ubi",
        f"{REGISTRY}/gitlab-workhorse-ce:v{TO}-ubi",
    ]
    assert (
        sidekiq["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{REGISTRY}/gitlab-sidekiq-ce:v{TO}-ubi"
    )


def test_without_a_toolbox_deployment_the_chart_migrations_job_is_the_template(
    private_ubi: StandInApiServer, tmp_path: Path
) -> None:
    toolbox = private_ubi.get("Deployment", TOOLBOX)
    assert toolbox is not None
    private_ubi.remove("Deployment", TOOLBOX)
    chart_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "gitlab-migrations-3-abcde",
            "namespace": "gitlab",
            "labels": {"app": "migrations", "release": "gitlab"},
            "creationTimestamp": "2026-11-01T10:00:00Z",
        },
        "spec": {"template": toolbox["spec"]["template"]},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    chart_job["spec"]["template"]["spec"]["containers"][0]["name"] = "migrations"
    private_ubi.put(chart_job)
    jobs = private_ubi.capture_jobs("ok\n")
    platform = _platform(private_ubi, tmp_path)
    assert platform.command_executor.run(["gitlab-rake", "db:migrate"], {}, 20).returncode == 0
    platform.close()
    [job] = jobs
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"{REGISTRY}/gitlab-toolbox-ce:v{TO}-ubi"
    assert [c["name"] for c in pod["initContainers"]] == ["certificates", "configure"]


def test_an_explicit_image_overrides_the_toolbox_image(private_ubi: StandInApiServer, tmp_path: Path) -> None:
    jobs = private_ubi.capture_jobs("ok\n")
    platform = _platform(private_ubi, tmp_path, toolbox_image="mirror.example/toolbox-fips:v{version}-fips")
    assert platform.command_executor.run(["gitlab-rake", "db:migrate"], {}, 20).returncode == 0
    platform.close()
    pod = jobs[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"mirror.example/toolbox-fips:v{TO}-fips"
    assert [c["name"] for c in pod["initContainers"]] == ["certificates", "configure"]  # still the chart's


def test_no_toolbox_and_no_image_is_a_clear_error_before_anything_is_paused(
    private_ubi: StandInApiServer, tmp_path: Path
) -> None:
    private_ubi.remove("Deployment", TOOLBOX)
    before = len(private_ubi.requests)
    platform = _platform(private_ubi, tmp_path)
    with pytest.raises(
        CommandError, match=r"no toolbox Deployment gitlab/gitlab-toolbox .*platform.toolbox_image"
    ):
        platform.command_executor.run(["gitlab-rake", "db:migrate"], {}, 20)
    platform.close()
    assert [m for m, _ in private_ubi.requests[before:] if m != "GET"] == []  # nothing paused, no Job


def test_a_toolbox_image_without_a_version_tag_is_a_clear_error(
    private_ubi: StandInApiServer, tmp_path: Path
) -> None:
    toolbox = private_ubi.get("Deployment", TOOLBOX)
    assert toolbox is not None
    toolbox["spec"]["template"]["spec"]["containers"][0]["image"] = (
        f"{REGISTRY}/gitlab-toolbox-ce@sha256:{'a' * 64}"
    )
    private_ubi.put(toolbox)
    platform = _platform(private_ubi, tmp_path)
    with pytest.raises(
        CommandError, match=r"has no tag naming a GitLab version .* set platform.toolbox_image"
    ):
        platform.command_executor.run(["gitlab-rake", "db:migrate"], {}, 20)
    platform.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Not An Image", "is not an image reference"),
        ("registry.example/toolbox:{release}", "bad placeholder"),
    ],
)
def test_a_bad_toolbox_image_is_refused_naming_the_field(value: str, problem: str) -> None:
    data = {
        "target": {"name": "cell", "platform": "kubernetes", "version": FROM},
        "release": {"version": TO},
        "platform": {"toolbox_image": value},
        "strategy": {"name": "rolling"},
    }
    with pytest.raises(ConfigError, match=rf"platform.toolbox_image: .*{re.escape(repr(value))}.*{problem}"):
        load_config(data, get_plugin_manager())
