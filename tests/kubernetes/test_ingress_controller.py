"""The ingress-nginx controller rollout settings, validated against the Kubernetes schemas.

Only the objects are checked here: that a controller rollout with them drops no connection needs a
real cluster (load balancer, kube-proxy, the real controller), see docs/kubernetes.md.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from zdu_kubernetes.ingress_controller import ControllerRollout, controller_objects, helm_values

from .test_kubernetes_schemas import KUBERNETES_VERSION


@pytest.mark.parametrize("rollout", [ControllerRollout(), ControllerRollout(replicas=3, pre_stop_delay=0)])
def test_the_controller_objects_pass_the_schemas(rollout: ControllerRollout) -> None:
    objects = controller_objects(rollout)
    assert [o["kind"] for o in objects] == ["Deployment", "ConfigMap", "PodDisruptionBudget"]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_times_add_up_so_no_connection_is_killed() -> None:
    rollout = ControllerRollout(pre_stop_delay=20, longest_connection=120)
    deployment, config_map, budget = controller_objects(rollout)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # the kubelet's SIGKILL comes after the preStop sleep and nginx's own limit for old workers
    assert pod["terminationGracePeriodSeconds"] == 20 + 120 + 30
    assert config_map["data"]["worker-shutdown-timeout"] == "120s"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [
        "/bin/sh",
        "-c",
        "sleep 20 && /wait-shutdown",
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 10254, "scheme": "HTTP"}
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert budget["spec"]["minAvailable"] == 1
    values = helm_values(rollout)["nginx-ingress"]["controller"]
    assert values["terminationGracePeriodSeconds"] == pod["terminationGracePeriodSeconds"]
    assert values["lifecycle"] == container["lifecycle"]
    assert values["config"] == config_map["data"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("replicas", 0), ("pre_stop_delay", -1), ("longest_connection", 0), ("image", " "), ("replicas", True)],
)
def test_bad_settings_name_the_field_and_the_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{field} must .*{value!r}"):
        ControllerRollout(**{field: value})


def test_the_schema_check_can_fail() -> None:
    """The control: a misspelt pod field is refused by the same validation."""
    deployment = controller_objects(ControllerRollout())[0]
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriod"] = pod.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
