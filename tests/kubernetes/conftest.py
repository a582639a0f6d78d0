"""Fixtures: a stand-in API server seeded with a GitLab chart's webservice, and zdu configured for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.config import load_config
from zdu.model import Target, Version
from zdu.platform import PlatformEnv
from zdu.registry import get_plugin_manager
from zdu.upgrade import Upgrade
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.platform import KubernetesPlatform

from .stand_in_apiserver import StandInApiServer

FROM, TO = "16.5.0", "16.6.0"
NAMESPACE = "gitlab"
CNG = "registry.gitlab.com/gitlab-org/build/cng"
LABELS = {"app": "webservice", "release": "gitlab"}


def chart_objects(
    version: str = FROM,
    replicas: int = 3,
    *,
    service_upstream: bool = True,
    registry: str = CNG,
    edition: str = "ee",
    flavour: str = "",
) -> list[dict[str, Any]]:
    """What the GitLab chart installs that zdu touches (trimmed to what matters here), its defaults.

    ``service_upstream=False``: the Ingress as a user who set the chart's serviceUpstream to false has it.
    ``registry``, ``edition`` (``ee``, ``ce``) and ``flavour`` (``-ubi``, ``-fips``): where the images
    come from, as the chart's ``global.image.registry``-style values and image suffixes set them.
    The toolbox's pod template is the chart's shape: a ``certificates`` init container (an image not
    tagged with the GitLab version) and a ``configure`` one (``gitlab-base``, tagged with it) that put
    the configuration and secrets in place, and resource requests and limits.
    """

    def image(name: str) -> str:
        return f"{registry}/{name}:v{version}{flavour}"

    def deployment(
        name: str,
        labels: dict[str, str],
        containers: list[dict[str, Any]],
        count: int,
        init: list[dict[str, Any]] | None = None,
        volumes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        pod: dict[str, Any] = {"containers": containers}
        if init:
            pod["initContainers"] = init
        if volumes:
            pod["volumes"] = volumes
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(labels)},
            "spec": {
                "replicas": count,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
            },
        }

    return [
        deployment(
            "gitlab-webservice-default",
            LABELS,
            [
                {
                    "name": "webservice",
                    "image": image(f"gitlab-webservice-{edition}"),
                    "ports": [{"containerPort": 8080}],
                },
                {
                    "name": "gitlab-workhorse",
                    "image": image(f"gitlab-workhorse-{edition}"),
                    "ports": [{"containerPort": 8181}],
                },
            ],
            replicas,
        ),
        deployment(
            "gitlab-sidekiq-all-in-1-v2",
            {"app": "sidekiq", "release": "gitlab"},
            [{"name": "sidekiq", "image": image(f"gitlab-sidekiq-{edition}")}],
            1,
        ),
        deployment(
            "gitlab-toolbox",
            {"app": "toolbox", "release": "gitlab"},
            [
                {
                    "name": "toolbox",
                    "image": image(f"gitlab-toolbox-{edition}"),
                    "env": [{"name": "CONFIG_DIRECTORY", "value": "/srv/gitlab/config"}],
                    "volumeMounts": [{"name": "config", "mountPath": "/srv/gitlab/config"}],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "350M"},
                        "limits": {"memory": "1600M"},
                    },
                }
            ],
            1,
            init=[
                {
                    "name": "certificates",
                    "image": f"{registry}/certificates:20230911-r0{flavour}",
                    "volumeMounts": [{"name": "etc-ssl-certs", "mountPath": "/etc/ssl/certs"}],
                },
                {
                    "name": "configure",
                    "image": image("gitlab-base"),
                    "command": ["sh", "/config/configure"],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/config", "readOnly": True},
                        {"name": "init-secrets", "mountPath": "/init-config", "readOnly": True},
                        {"name": "secrets", "mountPath": "/init-secrets"},
                    ],
                },
            ],
            volumes=[
                {"name": "config", "configMap": {"name": "gitlab-toolbox"}},
                {"name": "etc-ssl-certs", "emptyDir": {"medium": "Memory"}},
                {
                    "name": "init-secrets",
                    "projected": {"sources": [{"secret": {"name": "gitlab-rails-secret"}}]},
                },
                {"name": "secrets", "emptyDir": {"medium": "Memory"}},
            ],
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gitlab-webservice-default", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {
                "selector": dict(LABELS),
                "ports": [
                    {"name": "http-webservice", "port": 8080, "targetPort": 8080},
                    {"name": "http-workhorse", "port": 8181, "targetPort": 8181},
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "gitlab-webservice-default",
                "namespace": NAMESPACE,
                # the chart's default: ingress-nginx sends requests to the Service address
                "annotations": {
                    "nginx.ingress.kubernetes.io/service-upstream": str(service_upstream).lower()
                },
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "host": "gitlab.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": "gitlab-webservice-default",
                                            "port": {"number": 8181},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
                "tls": [{"hosts": ["gitlab.example.com"], "secretName": "gitlab-tls"}],
            },
        },
        {
            # the chart's webservice HPA (hpa.minReplicas 2, maxReplicas 10 by default)
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "gitlab-webservice-default", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "gitlab-webservice-default",
                },
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "1"}},
                    }
                ],
            },
        },
    ]


def _merge(live: Any, manifest: Any) -> Any:
    """Helm's patch, simplified: the manifest's fields win, maps merge, lists are replaced."""
    if isinstance(live, dict) and isinstance(manifest, dict):
        merged = dict(live)
        for key, value in manifest.items():
            merged[key] = _merge(live.get(key), value)
        return merged
    return manifest


def helm_upgrade(server: StandInApiServer, version: str) -> None:
    """``helm upgrade`` to ``version``, modelled as the chart's templates re-applied onto the live objects.

    The webservice Deployment's replicas are left alone (the HPA owns them), as are fields the chart
    does not set (zdu's annotations, a selector's extra label). Waits for the Deployments to settle.
    """
    objects = chart_objects(version)
    for manifest in objects:
        live = server.get(manifest["kind"], manifest["metadata"]["name"])
        if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == "gitlab-webservice-default":
            manifest["spec"].pop("replicas")
        if live is None:
            server.put(manifest)
            continue
        merged = _merge(live, manifest)
        if merged.get("spec") != live.get("spec"):
            merged["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
        server.put(merged)
    settle(server)


def settle(server: StandInApiServer, timeout: float = 20) -> None:
    """Wait until every Deployment of the namespace has its replicas available."""

    def settled() -> bool:
        for deployment in server.list("Deployment"):
            status = deployment.get("status") or {}
            want = int(deployment["spec"].get("replicas", 1))
            if status.get("observedGeneration") != deployment["metadata"].get("generation"):
                return False
            if status.get("availableReplicas", 0) != want or status.get("replicas", 0) != want:
                return False
        return True

    with server.changed:
        assert server.changed.wait_for(settled, timeout=timeout), "the Deployments did not settle"


def seed(server: StandInApiServer, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        server.put(obj)
    with server.changed:
        server.changed.wait_for(
            lambda: all(
                (server.get("Deployment", o["metadata"]["name"]) or {})
                .get("status", {})
                .get("availableReplicas")
                == o["spec"]["replicas"]
                for o in objects
                if o["kind"] == "Deployment"
            ),
            timeout=20,
        )


@pytest.fixture
def apiserver() -> Iterator[StandInApiServer]:
    server = StandInApiServer().start()
    objects = chart_objects()
    seed(server, objects)
    yield server
    server.stop()


def platform_options(server: StandInApiServer, **options: Any) -> dict[str, Any]:
    return {
        "api_url": server.url,
        "namespace": NAMESPACE,
        "rollout_timeout": 20.0,
        "lease_duration": 15,
        **options,
    }


@pytest.fixture
def platform(apiserver: StandInApiServer, tmp_path: Path) -> Iterator[KubernetesPlatform]:
    config = KubernetesPlatformConfig(**platform_options(apiserver))  # type: ignore[arg-type]
    env = PlatformEnv(
        target=Target("cell", "kubernetes", FROM), state_dir=tmp_path, release=Version.parse(TO)
    )
    platform = KubernetesPlatform(config, env)
    yield platform
    platform.close()


def upgrade_for(
    server: StandInApiServer,
    state_dir: Path,
    *,
    strategy: dict[str, Any] | None = None,
    layers: list[str] | None = None,
    migrations: dict[str, Any] | None = None,
    platform: dict[str, Any] | None = None,
    to: str = TO,
    current: str = FROM,
) -> Upgrade:
    data: dict[str, Any] = {
        "target": {"name": "cell", "platform": "kubernetes", "version": current},
        "release": {"version": to},
        "platform": platform_options(server, **(platform or {})),
        "strategy": {"name": "rolling", **(strategy or {}), "layers": layers or []},
        "upgrade": {"state_dir": str(state_dir)},
    }
    if migrations is not None:
        data["migrations"] = migrations
    manager = get_plugin_manager()
    return Upgrade(load_config(data, manager), manager, verify_seconds=0)


def webservice_images(server: StandInApiServer, name: str) -> list[str]:
    deployment = server.get("Deployment", name)
    assert deployment is not None, name
    return [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]


__all__ = ["FROM", "TO", "helm_upgrade", "os", "settle"]
