"""The chart as it is: consecutive upgrades, the chart's HPA, and ``helm upgrade`` after zdu.

The stand-in models the chart's defaults (an HPA on the webservice Deployment, ``service-upstream``
on the Ingress) and ``helm upgrade`` as the chart's templates re-applied onto the live objects.
"""

from __future__ import annotations

from pathlib import Path

from zdu.model import UpgradeStatus

from .conftest import CNG, FROM, helm_upgrade, upgrade_for
from .stand_in_apiserver import StandInApiServer

BASE = "gitlab-webservice-default"
SIDEKIQ = "gitlab-sidekiq-all-in-1-v2"
GROUP = "zdu.gitlab.com/group"


def _webservice_pods(server: StandInApiServer) -> list[dict[str, object]]:
    return [p for p in server.list("Pod") if p["metadata"]["labels"].get("app") == "webservice"]


def _served_images(server: StandInApiServer) -> set[str]:
    """The webservice images of the ready pods the Service selects."""
    service = server.get("Service", BASE)
    assert service is not None
    selector = service["spec"]["selector"]
    images = set()
    for pod in _webservice_pods(server):
        labels = pod["metadata"]["labels"]  # type: ignore[index]
        if all(labels.get(k) == v for k, v in selector.items()):
            images.add(pod["spec"]["containers"][0]["image"])  # type: ignore[index]
    return images


def _assert_handed_back(server: StandInApiServer, version: str) -> None:
    """Only ``version`` serves, from the chart's Deployment, scaled by the chart's HPA."""
    assert _served_images(server) == {f"{CNG}/gitlab-webservice-ee:v{version}"}
    deployments = {d["metadata"]["name"] for d in server.list("Deployment")}
    assert not any(name.startswith(f"{BASE}-v") for name in deployments), deployments  # no clone left
    base = server.get("Deployment", BASE)
    assert base is not None and base["spec"]["replicas"] == 3
    assert base["status"]["availableReplicas"] == 3
    service = server.get("Service", BASE)
    assert service is not None
    assert service["spec"]["selector"] == {"app": "webservice", "release": "gitlab"}  # the chart's
    hpa = server.get("HorizontalPodAutoscaler", BASE)
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"]["name"] == BASE
    assert "behavior" not in hpa["spec"] and "zdu.gitlab.com/hpa-behavior" not in hpa["metadata"].get(
        "annotations", {}
    )
    sidekiq = server.get("Deployment", SIDEKIQ)
    assert sidekiq is not None
    assert sidekiq["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":v{version}")


def _hpa_active(server: StandInApiServer) -> bool:
    hpa = server.get("HorizontalPodAutoscaler", BASE)
    assert hpa is not None
    conditions = hpa.get("status", {}).get("conditions") or []
    return any(c["type"] == "ScalingActive" and c["status"] == "True" for c in conditions)


def test_three_rolling_upgrades_then_blue_green_then_helm_upgrade(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    versions = [FROM, "16.6.0", "16.7.0", "16.8.0", "16.9.0"]
    for index, version in enumerate(versions[1:], start=1):
        old = versions[index - 1]
        strategy = {"name": "blue-green", "scale_down_delay": 0, "preview_seconds": 0} if index == 4 else None
        events_before = len(apiserver.events)
        upgrade = upgrade_for(apiserver, tmp_path / f"run{index}", to=version, current=old, strategy=strategy)
        report = upgrade.run()
        upgrade.close()
        assert report.status is UpgradeStatus.SUCCEEDED, (version, report.error)
        _assert_handed_back(apiserver, version)
        # no pod of an older version than the one being replaced was started (the old bug: the chart's
        # Deployment left at 0 came back with the version before)
        started = {
            obj["spec"]["containers"][0]["image"]
            for _, kind, event, obj in apiserver.events[events_before:]
            if kind == "Pod" and event == "ADDED" and obj["metadata"]["labels"].get("app") == "webservice"
        }
        assert started <= {f"{CNG}/gitlab-webservice-ee:v{old}", f"{CNG}/gitlab-webservice-ee:v{version}"}
    # the HPA never fought zdu's replica changes, and scales the chart's Deployment again
    assert apiserver.hpa_writes == []
    assert _hpa_active(apiserver)

    helm_upgrade(apiserver, versions[-1])
    _assert_handed_back(apiserver, versions[-1])
    assert _hpa_active(apiserver)


def test_helm_upgrade_after_zdu_rolls_the_chart_deployment_that_serves(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    upgrade = upgrade_for(apiserver, tmp_path)
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    # the next release through helm: the Deployment the Service selects rolls to it
    helm_upgrade(apiserver, "16.7.0")
    assert _served_images(apiserver) == {f"{CNG}/gitlab-webservice-ee:v16.7.0"}
    # and zdu reads the chart's Deployment's version from what it runs, not from its own annotation
    upgrade = upgrade_for(apiserver, tmp_path / "next", to="16.8.0", current="16.7.0")
    assert {str(g.version) for g in upgrade.platform.groups()} == {"16.7.0"}  # type: ignore[attr-defined]
    upgrade.close()
