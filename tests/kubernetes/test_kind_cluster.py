"""The same scenarios against a real cluster (kind, k3d, any): only with ``nox -s e2e_kind`` and a KUBECONFIG.

Checks only a real cluster makes: the API server accepts every object (admission, defaulting, field
validation), the real Deployment and Job controllers behave as zdu follows them, pods really start and
become ready, a Lease works with the real coordination API. Images are public stand-ins for GitLab's
(an unprivileged nginx as webservice, busybox as toolbox), tagged the same for both versions: the pod
template still changes (the group label), so every rollout is real.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.config import load_config
from zdu.errors import TargetBusy
from zdu.model import UpgradeStatus
from zdu.registry import get_plugin_manager
from zdu.upgrade import Upgrade

pytestmark = pytest.mark.skipif(
    not (os.environ.get("ZDU_E2E_KIND") and os.environ.get("KUBECONFIG")),
    reason="needs a real cluster: run 'nox -s e2e_kind' with KUBECONFIG set",
)

IMAGE = "nginxinc/nginx-unprivileged"
TAG = "1.27-alpine"


def _objects(namespace: str) -> list[dict[str, Any]]:
    labels = {"app": "webservice", "release": "gitlab"}
    container = {
        "name": "webservice",
        "image": f"{IMAGE}:{TAG}",
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "gitlab-webservice-default", "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 2,
                "progressDeadlineSeconds": 120,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gitlab-webservice-default", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "gitlab-webservice-default", "namespace": namespace},
            "spec": {
                "rules": [
                    {
                        "host": "gitlab.kind.test",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": "gitlab-webservice-default",
                                            "port": {"number": 8080},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ]
            },
        },
    ]


@pytest.fixture
def namespace() -> Iterator[str]:
    from kubernetes import client, config, utils  # noqa: PLC0415 - only with a cluster

    config.load_kube_config()
    api = client.ApiClient()
    name = f"zdu-e2e-{secrets.token_hex(3)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    try:
        for obj in _objects(name):
            utils.create_from_dict(api, obj, namespace=name)
        yield name
    finally:
        client.CoreV1Api(api).delete_namespace(name)


def _upgrade(
    namespace: str, state: Path, strategy: dict[str, Any], layers: list[str], **extra: Any
) -> Upgrade:
    data: dict[str, Any] = {
        "target": {"name": namespace, "platform": "kubernetes", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "platform": {
            "namespace": namespace,
            "image_tag": TAG,
            "toolbox_image": "busybox:1.36",
            "assets_image": "busybox:1.36",
            "assets_path": "/etc",
            "url": "http://gitlab.kind.test",
            "rollout_timeout": 180,
        },
        "strategy": {**strategy, "layers": layers},
        "upgrade": {"state_dir": str(state)},
        **extra,
    }
    manager = get_plugin_manager()
    return Upgrade(load_config(data, manager), manager, verify_seconds=1)


@pytest.mark.parametrize(
    ("strategy", "layers"),
    [
        ({"name": "rolling"}, ["sticky-nginx"]),
        ({"name": "blue-green", "scale_down_delay": 2, "preview_seconds": 0}, ["assets-shim"]),
    ],
)
def test_upgrade_on_a_real_cluster(
    namespace: str, tmp_path: Path, strategy: dict[str, Any], layers: list[str]
) -> None:
    migrations = {
        "migrations": {"name": "gitlab-rake", "command": ["sh", "-c", "echo migrated"], "status_command": []}
    }
    upgrade = _upgrade(namespace, tmp_path, strategy, layers, **migrations)
    report = upgrade.run()
    upgrade.close()
    assert report.status is UpgradeStatus.SUCCEEDED, report.error


def test_a_lease_on_a_real_cluster_refuses_a_second_upgrade(namespace: str, tmp_path: Path) -> None:
    first = _upgrade(namespace, tmp_path / "one", {"name": "rolling"}, [])
    second = _upgrade(namespace, tmp_path / "two", {"name": "rolling"}, [])
    with first.platform.hold_lock("pipeline one"), pytest.raises(TargetBusy, match="pipeline one"):
        second.run()
    first.close()
    second.close()
