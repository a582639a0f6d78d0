"""The strategies and layers, unchanged, on the kubernetes platform: the real client against the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdu.errors import TargetBusy
from zdu.model import UpgradeStatus

from .conftest import CNG, FROM, TO, upgrade_for, webservice_images
from .stand_in_apiserver import StandInApiServer

BASE = "gitlab-webservice-default"
CLONE = "gitlab-webservice-default-v16-6-0"


def _selector(server: StandInApiServer) -> dict[str, str]:
    service = server.get("Service", BASE)
    assert service is not None
    return service["spec"]["selector"]


def test_rolling_moves_every_pod_to_the_release(apiserver: StandInApiServer, tmp_path: Path) -> None:
    upgrade = upgrade_for(apiserver, tmp_path)
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    # handed back: the chart's Deployment runs the release with the replicas, the clone is gone
    assert webservice_images(apiserver, BASE) == [
        f"{CNG}/gitlab-webservice-ee:v{TO}",
        f"{CNG}/gitlab-workhorse-ee:v{TO}",
    ]
    assert apiserver.get("Deployment", CLONE) is None
    base = apiserver.get("Deployment", BASE)
    assert base is not None
    assert base["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "10%", "maxUnavailable": 0}
    assert base["spec"]["replicas"] == 3 and base["status"]["availableReplicas"] == 3
    assert _selector(apiserver) == {"app": "webservice", "release": "gitlab"}
    pods = [p for p in apiserver.list("Pod") if p["metadata"]["labels"].get("app") == "webservice"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {f"{CNG}/gitlab-webservice-ee:v{TO}"}
    assert apiserver.get("Lease", "zdu-cell") is None  # released


def test_blue_green_switches_the_service_selector(apiserver: StandInApiServer, tmp_path: Path) -> None:
    upgrade = upgrade_for(
        apiserver, tmp_path, strategy={"name": "blue-green", "scale_down_delay": 0, "preview_seconds": 0}
    )
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    switched = [
        method_path
        for method_path in apiserver.requests
        if method_path[0] == "PUT" and method_path[1].endswith(f"/services/{BASE}")
    ]
    assert switched  # the selector was pinned for the switch, then given back
    assert _selector(apiserver) == {"app": "webservice", "release": "gitlab"}
    base = apiserver.get("Deployment", BASE)
    assert base is not None and base["spec"]["replicas"] == 3
    assert "zdu.gitlab.com/group" not in base["spec"]["template"]["metadata"]["labels"]
    assert webservice_images(apiserver, BASE)[0].endswith(f":v{TO}")
    assert apiserver.get("Deployment", CLONE) is None


def test_rollback_mid_rollout_restores_the_old_pods(apiserver: StandInApiServer, tmp_path: Path) -> None:
    apiserver.failing_images.add(f"{CNG}/gitlab-webservice-ee:v{TO}")
    upgrade = upgrade_for(apiserver, tmp_path)
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.ROLLED_BACK
    assert "progress deadline" in (report.error or "")
    assert apiserver.get("Deployment", CLONE) is None
    base = apiserver.get("Deployment", BASE)
    assert base is not None
    assert base["spec"]["replicas"] == 3 and base["status"]["availableReplicas"] == 3
    assert webservice_images(apiserver, BASE)[0].endswith(f":v{FROM}")
    assert _selector(apiserver) == {"app": "webservice", "release": "gitlab"}  # the chart's again


def test_sticky_nginx_sets_and_removes_the_affinity_annotations(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    ingress = apiserver.get("Ingress", BASE)
    assert ingress is not None
    ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/service-upstream"] = "false"
    apiserver.put(ingress)
    seen: list[dict[str, str]] = []
    upgrade = upgrade_for(apiserver, tmp_path, layers=["sticky-nginx"])
    original = upgrade.platform.scale

    def scale(group: str, version: object, replicas: int) -> object:
        ingress = apiserver.get("Ingress", BASE)
        assert ingress is not None
        seen.append(dict(ingress["metadata"].get("annotations") or {}))
        return original(group, version, replicas)  # type: ignore[arg-type]

    upgrade.platform.scale = scale  # type: ignore[method-assign]
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert seen and all(a.get("nginx.ingress.kubernetes.io/affinity") == "cookie" for a in seen)
    assert seen[0]["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    ingress = apiserver.get("Ingress", BASE)
    assert ingress is not None
    assert not any("affinity" in key or "session-cookie" in key for key in ingress["metadata"]["annotations"])


def test_sticky_nginx_is_refused_under_service_upstream(apiserver: StandInApiServer, tmp_path: Path) -> None:
    ingress = apiserver.get("Ingress", BASE)
    assert ingress is not None  # the chart's default: service-upstream "true"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/service-upstream"] == "true"
    upgrade = upgrade_for(apiserver, tmp_path, layers=["sticky-nginx"])
    report = upgrade.run()
    upgrade.close()
    # refused in preflight, before any migration ran or any object changed
    assert report.status is UpgradeStatus.FAILED
    assert [phase for phase, _ in report.phases] == ["preflight"]
    assert "service-upstream" in (report.error or "") and "ignores session affinity" in (report.error or "")
    assert apiserver.get("Deployment", CLONE) is None


def test_assets_shim_is_created_routed_and_pruned(apiserver: StandInApiServer, tmp_path: Path) -> None:
    shim = "gitlab-webservice-default-zdu-assets"
    during: list[tuple[bool, str]] = []
    upgrade = upgrade_for(apiserver, tmp_path, layers=["assets-shim"])
    original = upgrade.platform.scale

    def scale(group: str, version: object, replicas: int) -> object:
        deployment = apiserver.get("Deployment", shim)
        assert deployment is not None
        during.append(
            (
                apiserver.get("Ingress", shim) is not None,
                deployment["metadata"]["annotations"]["zdu.gitlab.com/asset-versions"],
            )
        )
        return original(group, version, replicas)  # type: ignore[arg-type]

    upgrade.platform.scale = scale  # type: ignore[method-assign]
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert during and set(during) == {(True, f"{FROM},{TO}")}
    deployment = apiserver.get("Deployment", shim)
    assert deployment is not None
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["initContainers"]]
    assert images == [f"{CNG}/gitlab-webservice-ee:v{FROM}", f"{CNG}/gitlab-webservice-ee:v{TO}"]
    assert apiserver.get("Ingress", shim) is None  # the route went at cleanup
    # the next upgrade prunes the version that is no longer current or previous
    platform = upgrade_for(apiserver, tmp_path).platform
    platform.assets.prune([platform.env.release] if platform.env.release else [])
    deployment = apiserver.get("Deployment", shim)
    assert deployment is not None
    assert deployment["metadata"]["annotations"]["zdu.gitlab.com/asset-versions"] == TO
    platform.assets.prune([])
    assert apiserver.get("Deployment", shim) is None and apiserver.get("Service", shim) is None


def test_a_held_lease_refuses_a_second_upgrade(apiserver: StandInApiServer, tmp_path: Path) -> None:
    first = upgrade_for(apiserver, tmp_path / "one")
    second = upgrade_for(apiserver, tmp_path / "two")
    with first.platform.hold_lock("pipeline one"):
        lease = apiserver.get("Lease", "zdu-cell")
        assert lease is not None and lease["spec"]["holderIdentity"] == "pipeline one"
        with pytest.raises(TargetBusy, match="pipeline one"):
            second.run()
    assert apiserver.get("Deployment", CLONE) is None
    first.close()
    second.close()
