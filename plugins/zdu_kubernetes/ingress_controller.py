"""What a rollout of the ingress-nginx controller needs to drop no connection, as Kubernetes objects.

Upgrading ingress-nginx (a new controller image) replaces its pods; a pod that is told to stop while
clients still reach it, or that stops before its connections end, cuts them. That is the
non-graceful shutdown seen while ingress-nginx itself was upgraded. Three things prevent it, and
:func:`controller_objects` renders them:

* **Readiness** (``/healthz`` on 10254) and a rolling update with ``maxUnavailable: 0``: a new pod
  takes traffic only once its nginx serves, and the old one is stopped only after it;
  ``minReadySeconds`` lets the load balancer see the new pod before the next old one goes.
* **A preStop delay** (``sleep <pre_stop_delay>`` then ingress-nginx's own ``/wait-shutdown``): when
  a pod is deleted, the kubelet runs preStop while the Endpoints and the cloud load balancer are
  still being updated; the pod keeps serving during the sleep, so the requests that still arrive are
  answered. ``/wait-shutdown`` then makes nginx stop gracefully (SIGQUIT): no new connection, the
  open ones finish.
* **Time to finish**: the ConfigMap's ``worker-shutdown-timeout`` (how long nginx's old workers may
  keep a connection after a reload or a graceful stop: long downloads, websockets) set to
  ``longest_connection``, and ``terminationGracePeriodSeconds`` above the sum of both, so the kubelet
  does not SIGKILL nginx while it still finishes connections.

A PodDisruptionBudget keeps a node drain from taking every controller pod at once. The objects are
validated against the Kubernetes schemas in the tests; proving that a controller rollout under
traffic drops nothing needs a real cluster (a cloud load balancer, kube-proxy, the real controller),
which the tests here do not have: see docs/kubernetes.md.
"""

from __future__ import annotations

from typing import Any

import attrs

from zdu_kubernetes.api import Obj

__all__ = ["ControllerRollout", "controller_objects", "helm_values"]

#: Seconds of margin between the end of ``worker-shutdown-timeout`` and the kubelet's SIGKILL.
_MARGIN_S = 30


def _positive(_instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ingress controller {attribute.name} must be an integer >= 1, got {value!r}")


def _not_negative(_instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"ingress controller {attribute.name} must be an integer >= 0, got {value!r}")


def _not_empty(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"ingress controller {attribute.name} must not be empty, got {value!r}")


@attrs.frozen
class ControllerRollout:
    """How the ingress-nginx controller is to be rolled out.

    :ivar namespace: where the controller runs (the GitLab chart's release namespace).
    :ivar name: its Deployment (the GitLab chart names it ``<release>-nginx-ingress-controller``).
    :ivar image: the controller image being rolled out.
    :ivar replicas: controller pods (at least 2, or a rollout has a moment with one pod only).
    :ivar pre_stop_delay: seconds a stopping pod keeps serving before nginx stops accepting: longer
        than Endpoints and the load balancer take to stop sending it new connections (15 s covers
        kube-proxy; a cloud load balancer's health check interval times its unhealthy threshold can
        be more).
    :ivar longest_connection: seconds a connection may need to finish once nginx stops accepting:
        the longest download, the time a websocket client is given to reconnect elsewhere.
    :ivar min_ready_seconds: seconds a new pod must be ready before the next old one is stopped.
    """

    namespace: str = attrs.field(default="gitlab", validator=_not_empty)
    name: str = attrs.field(default="gitlab-nginx-ingress-controller", validator=_not_empty)
    image: str = attrs.field(default="registry.k8s.io/ingress-nginx/controller:v1.11.2", validator=_not_empty)
    replicas: int = attrs.field(default=2, validator=_positive)
    pre_stop_delay: int = attrs.field(default=15, validator=_not_negative)
    longest_connection: int = attrs.field(default=300, validator=_positive)
    min_ready_seconds: int = attrs.field(default=10, validator=_not_negative)

    @property
    def termination_grace(self) -> int:
        """``terminationGracePeriodSeconds``: the preStop delay, the longest connection, and a margin."""
        return self.pre_stop_delay + self.longest_connection + _MARGIN_S

    @property
    def pre_stop_command(self) -> list[str]:
        """The controller container's preStop: keep serving, then stop nginx gracefully and wait."""
        wait = "/wait-shutdown"
        if self.pre_stop_delay == 0:
            return [wait]
        return ["/bin/sh", "-c", f"sleep {self.pre_stop_delay} && {wait}"]


def _labels(rollout: ControllerRollout) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/instance": rollout.name}


def controller_objects(rollout: ControllerRollout) -> list[Obj]:
    """The controller's Deployment, its ConfigMap settings and a PodDisruptionBudget, for ``rollout``.

    Apply the Deployment's ``strategy``, ``minReadySeconds`` and pod settings to the controller the
    chart renders (or set them through :func:`helm_values`); the Deployment here is complete only so
    that it validates on its own.
    """
    labels = _labels(rollout)
    metadata = {"name": rollout.name, "namespace": rollout.namespace, "labels": labels}
    container = {
        "name": "controller",
        "image": rollout.image,
        "args": [
            "/nginx-ingress-controller",
            f"--configmap=$(POD_NAMESPACE)/{rollout.name}",
            # the controller's own shutdown waits this long for nginx (ingress-nginx >= 1.0)
            f"--shutdown-grace-period={rollout.pre_stop_delay}",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "ports": [
            {"name": "http", "containerPort": 80, "protocol": "TCP"},
            {"name": "https", "containerPort": 443, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 10254, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "successThreshold": 1,
            "timeoutSeconds": 1,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 5,
            "timeoutSeconds": 1,
        },
        "lifecycle": {"preStop": {"exec": {"command": rollout.pre_stop_command}}},
    }
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": rollout.replicas,
            "minReadySeconds": rollout.min_ready_seconds,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": rollout.termination_grace,
                    "containers": [container],
                },
            },
        },
    }
    config_map: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"worker-shutdown-timeout": f"{rollout.longest_connection}s"},
    }
    budget: Obj = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {"minAvailable": max(1, rollout.replicas - 1), "selector": {"matchLabels": labels}},
    }
    return [deployment, config_map, budget]


def helm_values(rollout: ControllerRollout) -> dict[str, Any]:
    """The same settings as values of the GitLab chart's bundled ingress-nginx (``nginx-ingress:``)."""
    return {
        "nginx-ingress": {
            "controller": {
                "replicaCount": rollout.replicas,
                "minReadySeconds": rollout.min_ready_seconds,
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "terminationGracePeriodSeconds": rollout.termination_grace,
                "lifecycle": {"preStop": {"exec": {"command": rollout.pre_stop_command}}},
                "extraArgs": {"shutdown-grace-period": str(rollout.pre_stop_delay)},
                "config": {"worker-shutdown-timeout": f"{rollout.longest_connection}s"},
                "minAvailable": max(1, rollout.replicas - 1),
            }
        }
    }
