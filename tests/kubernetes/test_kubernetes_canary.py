"""The canary strategy on ingress-nginx: a canary Service and a canary Ingress, step by step.

The real client against the stand-in API server walks every step (the pause until ``zdu promote``
included), and every canary object is checked against the Kubernetes schemas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from zdu.context import PROMOTE_EVENT
from zdu.model import Event, UpgradeStatus
from zdu.platform import WEIGHTS_ON_OFF, CanaryRoute, SplitsTraffic, weight_semantics
from zdu.plugins import hookimpl
from zdu_kubernetes.platform import KubernetesPlatform

from .conftest import TO, upgrade_for
from .stand_in_apiserver import StandInApiServer
from .test_kubernetes_schemas import KUBERNETES_VERSION, _plan

BASE = "gitlab-webservice-default"
CANARY = "gitlab-webservice-default-zdu-canary"
NEW_GROUP = "v16-6-0"
ANNOTATION = "nginx.ingress.kubernetes.io/"


def _validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


class StepRecorder:
    """Snapshots the canary objects after every canary step; promotes the upgrade when it pauses."""

    def __init__(self, server: StandInApiServer, journal: Any) -> None:
        self.server = server
        self.journal = journal
        self.steps: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = []

    @hookimpl
    def zdu_event(self, upgrade: Any, event: Event) -> None:
        if event.kind == "step-finished" and event.message.startswith("canary step"):
            self.steps.append(
                (event.message, self.server.get("Ingress", CANARY), self.server.get("Service", CANARY))
            )
        if event.kind == "paused-for-promotion":
            self.journal.record(upgrade.id, event.phase, PROMOTE_EVENT, "promoted by the test")


def test_every_step_is_a_canary_ingress_with_the_cookie_route(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    strategy = {
        "name": "canary",
        "preview_seconds": 0,
        "steps": [{"weight": 5}, {"weight": 25}, {"pause": {}}, {"weight": 60}, {"weight": 100}],
    }
    upgrade = upgrade_for(apiserver, tmp_path, strategy=strategy)
    recorder = StepRecorder(apiserver, upgrade.journal)
    upgrade.manager.register(recorder)
    try:
        report = upgrade.run()
    finally:
        upgrade.manager.unregister(recorder)
        upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    weights = [m.partition(": ")[2].partition("%")[0] for m, _, _ in recorder.steps if "%" in m]
    assert weights == ["5", "25", "60", "100"]
    for message, ingress, service in recorder.steps:
        if "%" not in message:
            continue
        assert ingress is not None and service is not None, message
        _validate(ingress)
        _validate(service)
        annotations = ingress["metadata"]["annotations"]
        assert annotations[ANNOTATION + "canary"] == "true"
        assert annotations[ANNOTATION + "canary-weight"] == message.partition(": ")[2].partition("%")[0]
        # the cookie route: ingress-nginx's cookie rule, and gitlab_canary=true matched as it is
        assert annotations[ANNOTATION + "canary-by-cookie"] == "gitlab_canary"
        assert annotations[ANNOTATION + "canary-by-header"] == "Cookie"
        assert annotations[ANNOTATION + "canary-by-header-pattern"] == r"(^|;\s*)gitlab_canary=true(;|$)"
        # the same hosts and paths as the main Ingress, every backend the canary Service
        main = apiserver.get("Ingress", "gitlab-webservice-default")
        assert main is not None
        assert [r.get("host") for r in ingress["spec"]["rules"]] == [
            r.get("host") for r in main["spec"]["rules"]
        ]
        backends = {
            p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
        }
        assert backends == {CANARY}
        assert service["spec"]["selector"]["zdu.gitlab.com/group"] == NEW_GROUP
    kinds = [e.kind for e in upgrade.journal.events(report.upgrade_id)]
    assert kinds.index("paused-for-promotion") < kinds.index(PROMOTE_EVENT) < kinds.index("promoted")
    # promoted: the release serves from the chart's Deployment behind the chart's selector, the canary
    # objects are gone
    service = apiserver.get("Service", BASE)
    assert service is not None and service["spec"]["selector"] == {"app": "webservice", "release": "gitlab"}
    base = apiserver.get("Deployment", BASE)
    assert base is not None and base["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":v{TO}")
    assert apiserver.get("Ingress", CANARY) is None and apiserver.get("Service", CANARY) is None


def test_the_router_splits_by_share_and_says_its_weights_are_on_or_off(platform: KubernetesPlatform) -> None:
    router = platform.router
    assert isinstance(router, SplitsTraffic)
    assert weight_semantics(router) == WEIGHTS_ON_OFF
    assert router.canary() is None
    router.set_canary("v16-5-0", 10, None, "X-Gitlab-Canary: true")
    assert router.canary() == CanaryRoute("v16-5-0", 10, None, "X-Gitlab-Canary: true")
    ingress = platform.api.get("Ingress", CANARY)
    assert ingress is not None
    _validate(ingress)
    annotations = ingress["metadata"]["annotations"]
    assert annotations[ANNOTATION + "canary-by-header"] == "X-Gitlab-Canary"
    assert annotations[ANNOTATION + "canary-by-header-value"] == "true"
    assert ANNOTATION + "canary-by-cookie" not in annotations
    router.set_canary("v16-5-0", 30, "gitlab_canary=true", "X-Gitlab-Canary: true")  # changed in place
    assert router.canary() == CanaryRoute("v16-5-0", 30, "gitlab_canary=true", "X-Gitlab-Canary: true")
    with pytest.raises(Exception, match="101"):
        router.set_canary("v16-5-0", 101)
    router.remove_managed_routes()
    assert router.canary() is None and platform.api.get("Service", CANARY) is None


def test_the_planned_canary_objects_pass_the_schemas(tmp_path: Path) -> None:
    changes = _plan(
        tmp_path,
        "canary",
        [],
        "preview_seconds = 0\nsteps = [{weight = 5}, {weight = 50}, {pause = {}}, {weight = 100}]",
    )
    for change in changes:
        _validate(change)
    canaries = [c for c in changes if c["kind"] == "Ingress" and c["metadata"]["name"] == CANARY]
    assert canaries, json.dumps([c["metadata"]["name"] for c in changes])
    assert {c["metadata"]["annotations"].get(ANNOTATION + "canary-weight") for c in canaries} >= {"5", "50"}
    assert TO
