"""Faults injected by the stand-in: 409, 429 with Retry-After, 500, broken watches; and the Job executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdu.errors import PlatformError
from zdu.migrations import CommandTimeout
from zdu.model import UpgradeStatus, Version
from zdu_kubernetes.api import ClusterApi, WaitTimeout
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.platform import KubernetesPlatform, client_configuration

from .conftest import CNG, TO, upgrade_for
from .stand_in_apiserver import StandInApiServer


def _api(server: StandInApiServer, sleeps: list[float]) -> ClusterApi:
    config = KubernetesPlatformConfig(api_url=server.url)
    return ClusterApi(client_configuration(config), "gitlab", attempts=4, backoff=0.01, sleep=sleeps.append)


def test_429_is_retried_after_what_retry_after_says(apiserver: StandInApiServer) -> None:
    sleeps: list[float] = []
    api = _api(apiserver, sleeps)
    apiserver.inject("GET", "services", 429, times=2, retry_after="7")
    service = api.get("Service", "gitlab-webservice-default")
    assert service is not None and service["metadata"]["name"] == "gitlab-webservice-default"
    assert sleeps == [7.0, 7.0]
    assert api.retries == 2


def test_500_is_retried_with_backoff_then_reported(apiserver: StandInApiServer) -> None:
    sleeps: list[float] = []
    api = _api(apiserver, sleeps)
    apiserver.inject("GET", "deployments", 500, times=1)
    assert api.get("Deployment", "gitlab-webservice-default") is not None
    assert sleeps == [0.01]
    apiserver.inject("GET", "deployments", 503, times=10)
    with pytest.raises(PlatformError, match="503"):
        api.get("Deployment", "gitlab-webservice-default")


def test_409_rereads_and_applies_the_change_again(apiserver: StandInApiServer) -> None:
    api = _api(apiserver, [])
    apiserver.inject("PUT", "deployments", 409, times=2)

    def scale(obj: dict) -> bool:
        obj["spec"]["replicas"] = 4
        return True

    api.update("Deployment", "gitlab-webservice-default", scale)
    deployment = apiserver.get("Deployment", "gitlab-webservice-default")
    assert deployment is not None and deployment["spec"]["replicas"] == 4
    assert api.conflicts == 2


def test_a_stale_resource_version_is_a_conflict_that_is_reapplied(apiserver: StandInApiServer) -> None:
    api = _api(apiserver, [])
    calls = 0

    def change(obj: dict) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes between our read and our replace
            other = apiserver.get("Service", "gitlab-webservice-default")
            assert other is not None
            other["metadata"].setdefault("labels", {})["someone"] = "else"
            apiserver.put(other)
        obj["metadata"].setdefault("annotations", {})["zdu"] = "was here"
        return True

    api.update("Service", "gitlab-webservice-default", change)
    service = apiserver.get("Service", "gitlab-webservice-default")
    assert service is not None
    assert (
        service["metadata"]["labels"]["someone"] == "else"
        and service["metadata"]["annotations"]["zdu"] == "was here"
    )
    assert calls == 2 and api.conflicts == 1


def test_a_broken_watch_is_resumed(apiserver: StandInApiServer) -> None:
    api = _api(apiserver, [])
    apiserver.break_watches("deployments", times=2)

    def scale(obj: dict) -> bool:
        obj["spec"]["replicas"] = 5
        return True

    api.update("Deployment", "gitlab-webservice-default", scale)
    done = api.wait(
        "Deployment",
        "gitlab-webservice-default",
        lambda obj: obj is not None and obj.get("status", {}).get("availableReplicas") == 5,
        20,
        "five available replicas",
    )
    assert done is not None
    assert api.watch_resumes == 2
    watches = [path for method, path in apiserver.requests if "?watch" in path]
    assert len(watches) == 3
    assert len({w.rsplit("=", 1)[1] for w in watches}) == 1  # each resumed from the version it had seen


def test_a_watch_error_event_410_lists_again(apiserver: StandInApiServer) -> None:
    api = _api(apiserver, [])
    apiserver.expire_watches("deployments", times=2)

    def scale(obj: dict) -> bool:
        obj["spec"]["replicas"] = 4
        return True

    api.update("Deployment", "gitlab-webservice-default", scale)
    done = api.wait(
        "Deployment",
        "gitlab-webservice-default",
        lambda obj: obj is not None and obj.get("status", {}).get("availableReplicas") == 4,
        20,
        "four available replicas",
    )
    assert done is not None and apiserver.watch_errors["deployments"] == 0
    lists = [
        path
        for method, path in apiserver.requests
        if method == "GET" and path.endswith("/deployments") and "?watch" not in path
    ]
    assert len(lists) == 3  # the first list, then one after each ERROR event


def test_a_wait_has_a_deadline_with_a_clear_message(apiserver: StandInApiServer) -> None:
    api = _api(apiserver, [])
    with pytest.raises(
        WaitTimeout, match=r"timed out after 0.3s waiting for a miracle; last seen: .*availableReplicas 3"
    ):
        api.wait("Deployment", "gitlab-webservice-default", lambda obj: False, 0.3, "a miracle")


def test_an_upgrade_survives_injected_faults(apiserver: StandInApiServer, tmp_path: Path) -> None:
    apiserver.inject("PUT", "deployments", 409, times=2)
    apiserver.inject("PUT", "services", 409, times=1)
    apiserver.inject("GET", "deployments", 429, times=2, retry_after="0")
    apiserver.inject("POST", "deployments", 500, times=1)
    apiserver.inject("GET", "pods", 503, times=1)
    apiserver.break_watches("deployments", times=2)
    upgrade = upgrade_for(apiserver, tmp_path, platform={"request_attempts": 4})
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert all(f.times == 0 for f in apiserver.faults)
    assert apiserver.watch_breaks["deployments"] == 0
    assert apiserver.get("Deployment", "gitlab-webservice-default-v16-6-0") is None  # handed back
    base = apiserver.get("Deployment", "gitlab-webservice-default")
    assert base is not None and base["status"]["availableReplicas"] == 3
    assert base["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v16.6.0")


# -- migrations as a Job -----------------------------------------------------------------------------


def test_the_migrations_job_runs_the_release_toolbox_and_pauses_around_it(
    apiserver: StandInApiServer, platform: KubernetesPlatform
) -> None:
    seen: dict[str, object] = {}

    def handler(job: dict) -> tuple[int, str]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        seen["image"] = container["image"]
        seen["env"] = {e["name"]: e.get("value") for e in container.get("env", [])}
        seen["paused"] = {
            name: (apiserver.get("Deployment", name) or {})["spec"].get("paused")
            for name in ("gitlab-webservice-default", "gitlab-sidekiq-all-in-1-v2")
        }
        seen["volumes"] = job["spec"]["template"]["spec"].get("volumes")
        return 0, "== 20231024 AddThing: migrating\n== 20231024 AddThing: migrated\n"

    apiserver.job_handler = handler
    lines: list[str] = []
    result = platform.command_executor.run(
        ["gitlab-rake", "db:migrate"], {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"}, 20, lines.append
    )
    assert result.returncode == 0
    assert lines == ["== 20231024 AddThing: migrating", "== 20231024 AddThing: migrated"]
    assert seen["image"] == f"{CNG}/gitlab-toolbox-ee:v{TO}"
    assert seen["env"] == {
        "CONFIG_DIRECTORY": "/srv/gitlab/config",
        "SKIP_POST_DEPLOYMENT_MIGRATIONS": "true",
    }
    assert seen["paused"] == {"gitlab-webservice-default": True, "gitlab-sidekiq-all-in-1-v2": True}
    assert [v["name"] for v in seen["volumes"]] == ["config", "etc-ssl-certs", "init-secrets", "secrets"]  # type: ignore[attr-defined]
    for name in ("gitlab-webservice-default", "gitlab-sidekiq-all-in-1-v2"):
        assert not (apiserver.get("Deployment", name) or {})["spec"].get("paused")
    patches = [path for method, path in apiserver.requests if method == "PUT" and "/deployments/" in path]
    assert patches[-2:] == [
        "/apis/apps/v1/namespaces/gitlab/deployments/gitlab-sidekiq-all-in-1-v2",
        "/apis/apps/v1/namespaces/gitlab/deployments/gitlab-webservice-default",
    ]  # sidekiq resumed first


BACKGROUND_STATUS = ["gitlab-rake", "gitlab:background_migrations:status"]


def test_a_failed_migrations_job_surfaces_its_log_and_status(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    def handler(job: dict) -> tuple[int, str]:
        if job["spec"]["template"]["spec"]["containers"][0]["args"] == BACKGROUND_STATUS:
            return 0, ""  # preflight: no batched background migration is queued
        return 1, "== AddThing: migrating\nPG::DuplicateColumn: column exists\n"

    apiserver.job_handler = handler
    upgrade = upgrade_for(
        apiserver, tmp_path, migrations={"name": "gitlab-rake", "status_command": [], "timeout": 20}
    )
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.ROLLED_BACK
    assert "exit status 1" in (report.error or "") and "PG::DuplicateColumn" in (report.error or "")
    assert apiserver.get("Deployment", "gitlab-webservice-default-v16-6-0") is None
    assert not (apiserver.get("Deployment", "gitlab-webservice-default") or {})["spec"].get("paused")


def test_an_upgrade_with_migrations_in_jobs_succeeds(apiserver: StandInApiServer, tmp_path: Path) -> None:
    commands: list[tuple[list[str], str | None]] = []

    def handler(job: dict) -> tuple[int, str]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        commands.append((container["args"], env.get("SKIP_POST_DEPLOYMENT_MIGRATIONS")))
        return 0, "ok\n"

    apiserver.job_handler = handler
    upgrade = upgrade_for(
        apiserver, tmp_path, migrations={"name": "gitlab-rake", "status_command": [], "timeout": 20}
    )
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    # preflight asks GitLab for unfinished batched background migrations (a read, in a Job too), then
    # the regular migrations run without the post-deployment ones, and those run last
    assert commands == [
        (BACKGROUND_STATUS, None),
        (["gitlab-rake", "db:migrate"], "true"),
        (["gitlab-rake", "db:migrate"], None),
    ]


def test_a_migrations_job_past_its_timeout_is_deleted(
    apiserver: StandInApiServer, platform: KubernetesPlatform
) -> None:
    apiserver.jobs_stalled = True
    with pytest.raises(CommandTimeout, match=r"did not finish within 0.5s and was deleted"):
        platform.command_executor.run(["gitlab-rake", "db:migrate"], {}, 0.5)
    assert apiserver.list("Job") == []
    assert not (apiserver.get("Deployment", "gitlab-webservice-default") or {})["spec"].get("paused")
    assert platform.env.release == Version.parse(TO)
