"""The objects zdu writes, built as plain dictionaries: labels, group Deployments, routes, the assets shim.

Pure functions of their inputs, so that ``zdu plan --offline`` and the schema tests see exactly what
the platform sends.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence

import attrs

from zdu.plugins import Version
from zdu_kubernetes.api import Obj
from zdu_kubernetes.config import KubernetesPlatformConfig

__all__ = [
    "AFFINITY_ANNOTATIONS",
    "BASE_LABEL",
    "GROUP_LABEL",
    "MANAGED_BY",
    "SERVICE_UPSTREAM",
    "VERSION_ANNOTATION",
    "affinity_annotations",
    "assets_deployment",
    "assets_ingress",
    "assets_service",
    "canary_annotations",
    "canary_ingress",
    "group_deployment",
    "group_name",
    "image_version",
    "retag",
    "retag_pod",
    "retag_release",
]

GROUP_LABEL = "zdu.gitlab.com/group"
BASE_LABEL = "zdu.gitlab.com/base"
VERSION_ANNOTATION = "zdu.gitlab.com/version"
REMOVED_ANNOTATION = "zdu.gitlab.com/removed"
#: the HorizontalPodAutoscaler's own ``spec.behavior`` (JSON), kept while zdu holds its scaling
HPA_BEHAVIOR_ANNOTATION = "zdu.gitlab.com/hpa-behavior"
BASE_SELECTOR_ANNOTATION = "zdu.gitlab.com/base-selector"
ASSET_VERSIONS_ANNOTATION = "zdu.gitlab.com/asset-versions"
MANAGED_BY = {"app.kubernetes.io/managed-by": "zdu"}
SERVICE_UPSTREAM = "nginx.ingress.kubernetes.io/service-upstream"
AFFINITY_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/affinity",
    "nginx.ingress.kubernetes.io/affinity-mode",
    "nginx.ingress.kubernetes.io/session-cookie-name",
    "nginx.ingress.kubernetes.io/session-cookie-max-age",
)
_NAME_LIMIT = 63


def group_name(version: Version) -> str:
    """``v`` and the version with dashes (``16.6.0`` is ``v16-6-0``), a valid label value."""
    canonical = str(attrs.evolve(version, text=""))
    name = "v" + re.sub(r"[^a-z0-9]+", "-", canonical.lower()).strip("-")
    if len(name) > _NAME_LIMIT:
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
        name = name[: _NAME_LIMIT - 9].rstrip("-") + "-" + digest
    return name


def clone_name(base: str, group: str) -> str:
    """The name of the clone of Deployment ``base`` for ``group`` (at most 63 characters)."""
    name = f"{base}-{group}"
    if len(name) > _NAME_LIMIT:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name[: _NAME_LIMIT - 9].rstrip("-") + "-" + digest
    return name


def retag(image: str, tag: str) -> str:
    """``image`` with its tag (or digest) replaced by ``tag``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{name}:{tag}"


#: the flavours of GitLab's images published beside the plain one, as a suffix of the tag
#: (``v16.6.0-ubi``, ``v16.6.0-ubi8``, ``v16.6.0-fips``): a retagged image keeps its flavour
_FLAVOUR = re.compile(r"-(?:ubi\d*|fips)$")


def _release_tag(image: str, config: KubernetesPlatformConfig) -> tuple[Version, str] | None:
    """The version an image's tag names under ``image_tag`` and the tag's flavour suffix, or None."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon <= slash:
        return None
    tag = name[colon + 1 :]
    flavour = _FLAVOUR.search(tag)
    suffix_of_flavour = flavour.group(0) if flavour is not None else ""
    bare = tag[: len(tag) - len(suffix_of_flavour)]
    prefix, _, suffix = config.image_tag.partition("{version}")
    match = re.fullmatch(re.escape(prefix) + r"(?P<version>\d+\.\d+\.\d+\S*?)" + re.escape(suffix), bare)
    if match is None:
        return None
    try:
        return Version.parse(match["version"]), suffix_of_flavour
    except ValueError:
        return None


def image_version(image: str, config: KubernetesPlatformConfig) -> Version | None:
    """The GitLab version an image's tag names under ``image_tag`` (``v16.6.0``, ``v16.6.0-ubi``), or None.

    Images the chart tags otherwise (``certificates``, ``gitlab-base`` of init containers) name none.
    """
    found = _release_tag(image, config)
    return found[0] if found is not None else None


def retag_release(image: str, version: Version, config: KubernetesPlatformConfig) -> str | None:
    """``image`` tagged for ``version``, keeping its registry, repository and flavour.

    The flavour is a tag suffix such as ``-ubi`` or ``-fips``. None when the tag names no GitLab
    version under ``image_tag``.
    """
    found = _release_tag(image, config)
    if found is None:
        return None
    return retag(image, config.image_tag.format(version=version) + found[1])


def retag_pod(pod: Obj, version: Version, config: KubernetesPlatformConfig) -> bool:
    """Retag, in place, every container of ``pod`` (a pod spec) whose image names a GitLab version.

    Registry, repository and flavour (``-ubi``, ``-fips``) are kept. Init containers of other images
    (the chart's ``certificates``, ``configure``) keep theirs. Returns whether an image changed.
    """
    changed = False
    for key in ("initContainers", "containers"):
        for container in pod.get(key) or []:
            image = container.get("image") or ""
            new = retag_release(image, version, config)
            if new is not None:
                changed = changed or new != image
                container["image"] = new
    return changed


def rolling_update(config: KubernetesPlatformConfig) -> Obj:
    """The Deployment strategy GitLab advises for zero downtime (configurable)."""
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {
            "maxSurge": config.int_or_percent(config.max_surge),
            "maxUnavailable": config.int_or_percent(config.max_unavailable),
        },
    }


def group_deployment(
    base: Obj, group: str, version: Version, replicas: int, config: KubernetesPlatformConfig
) -> Obj:
    """A clone of ``base`` for ``group``: every GitLab image retagged for ``version``.

    Labelled (selector, pod template) with the group, annotated with the version; the rollout strategy
    is GitLab's advice for zero downtime.
    """
    base_meta = base.get("metadata", {})
    spec = copy.deepcopy(base["spec"])
    template = spec["template"]
    template.setdefault("metadata", {}).setdefault("labels", {})[GROUP_LABEL] = group
    template["metadata"].pop("creationTimestamp", None)
    retag_pod(template["spec"], version, config)
    selector = spec.setdefault("selector", {})
    selector.setdefault("matchLabels", {})[GROUP_LABEL] = group
    spec["replicas"] = replicas
    spec["strategy"] = rolling_update(config)
    spec.pop("paused", None)
    labels = {
        **(base_meta.get("labels") or {}),
        **MANAGED_BY,
        GROUP_LABEL: group,
        BASE_LABEL: base_meta["name"],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": clone_name(base_meta["name"], group),
            "namespace": config.namespace,
            "labels": labels,
            "annotations": {VERSION_ANNOTATION: str(version)},
        },
        "spec": spec,
    }


def affinity_annotations(config: KubernetesPlatformConfig) -> dict[str, str]:
    """ingress-nginx cookie affinity, persistent: a client stays on its pod while the pod lives."""
    return {
        "nginx.ingress.kubernetes.io/affinity": "cookie",
        "nginx.ingress.kubernetes.io/affinity-mode": "persistent",
        "nginx.ingress.kubernetes.io/session-cookie-name": config.affinity_cookie,
        "nginx.ingress.kubernetes.io/session-cookie-max-age": str(config.affinity_max_age),
    }


def _assets_labels(config: KubernetesPlatformConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": "zdu-assets", BASE_LABEL: config.deployment}


def assets_name(config: KubernetesPlatformConfig) -> str:
    """The name of the assets shim's Deployment, Service and Ingress."""
    return clone_name(config.deployment, "zdu-assets")


def assets_deployment(config: KubernetesPlatformConfig, versions: Sequence[Version]) -> Obj:
    """A web server holding ``versions``' assets: one init container per version copies them in."""
    labels = _assets_labels(config)
    init = [
        {
            "name": f"assets-{group_name(version)}"[:_NAME_LIMIT],
            "image": config.assets_image.format(version=version),
            "command": ["cp", "-R", f"{config.assets_path.rstrip('/')}/.", "/zdu-assets/assets/"],
            "volumeMounts": [{"name": "assets", "mountPath": "/zdu-assets/assets"}],
        }
        for version in versions
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": assets_name(config),
            "namespace": config.namespace,
            "labels": {**labels, **MANAGED_BY},
            "annotations": {ASSET_VERSIONS_ANNOTATION: ",".join(str(v) for v in versions)},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": rolling_update(config),
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "initContainers": init,
                    "containers": [
                        {
                            "name": "assets",
                            "image": config.assets_server_image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}},
                            "volumeMounts": [{"name": "assets", "mountPath": "/usr/share/nginx/html/assets"}],
                        }
                    ],
                    "volumes": [{"name": "assets", "emptyDir": {}}],
                },
            },
        },
    }


def assets_service(config: KubernetesPlatformConfig) -> Obj:
    """The Service in front of the assets shim."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": assets_name(config),
            "namespace": config.namespace,
            "labels": {**_assets_labels(config), **MANAGED_BY},
        },
        "spec": {
            "selector": _assets_labels(config),
            "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
        },
    }


def _route_ingress(
    ingress: Obj, name: str, hosts: Sequence[str | None], path: str, service: str, port: int
) -> Obj:
    spec: Obj = {
        "rules": [
            {
                **({"host": host} if host else {}),
                "http": {
                    "paths": [
                        {
                            "path": path,
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": port}}},
                        }
                    ]
                },
            }
            for host in hosts
        ]
    }
    source = ingress.get("spec", {})
    if source.get("ingressClassName"):
        spec["ingressClassName"] = source["ingressClassName"]
    if source.get("tls"):
        spec["tls"] = copy.deepcopy(source["tls"])
    annotations = {
        key: value
        for key, value in (ingress.get("metadata", {}).get("annotations") or {}).items()
        if key == "kubernetes.io/ingress.class"
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": ingress.get("metadata", {}).get("namespace") or "default",
            "labels": dict(MANAGED_BY),
            **({"annotations": annotations} if annotations else {}),
        },
        "spec": spec,
    }


def ingress_hosts(ingress: Obj) -> list[str | None]:
    """The hosts of ``ingress``'s rules (``None`` for a rule without one)."""
    return [rule.get("host") for rule in ingress.get("spec", {}).get("rules") or [{}]]


def assets_ingress(ingress: Obj, config: KubernetesPlatformConfig) -> Obj:
    """An Ingress routing ``/assets`` of the same hosts to the assets shim (the longest path wins)."""
    route = _route_ingress(
        ingress, assets_name(config), ingress_hosts(ingress), "/assets", assets_name(config), 8080
    )
    route["metadata"]["namespace"] = config.namespace
    return route


def preview_service(service: Obj, group: str, name: str, config: KubernetesPlatformConfig) -> Obj:
    """A Service like ``service`` that selects only ``group``'s pods."""
    selector = dict(base_selector(service))
    selector[GROUP_LABEL] = group
    ports = [
        {key: value for key, value in port.items() if key != "nodePort"}
        for port in service.get("spec", {}).get("ports") or []
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": config.namespace, "labels": dict(MANAGED_BY)},
        "spec": {"selector": selector, "ports": ports},
    }


def preview_ingress(ingress: Obj, service: Obj, name: str, config: KubernetesPlatformConfig) -> Obj:
    """An Ingress for the preview host to the preview Service."""
    port = (service.get("spec", {}).get("ports") or [{"port": 80}])[0]["port"]
    route = _route_ingress(ingress, name, [config.preview_host], "/", name, int(port))
    route["metadata"]["namespace"] = config.namespace
    route["spec"].pop("tls", None)
    return route


def base_selector(service: Obj) -> Mapping[str, str]:
    """The Service's selector as the chart wrote it (before zdu pinned it to a group)."""
    import json  # noqa: PLC0415

    annotations = service.get("metadata", {}).get("annotations") or {}
    if BASE_SELECTOR_ANNOTATION in annotations:
        saved: dict[str, str] = json.loads(annotations[BASE_SELECTOR_ANNOTATION])
        return saved
    selector = dict(service.get("spec", {}).get("selector") or {})
    selector.pop(GROUP_LABEL, None)
    return selector


CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_BY_COOKIE = "nginx.ingress.kubernetes.io/canary-by-cookie"
CANARY_BY_HEADER = "nginx.ingress.kubernetes.io/canary-by-header"
CANARY_BY_HEADER_VALUE = "nginx.ingress.kubernetes.io/canary-by-header-value"
CANARY_BY_HEADER_PATTERN = "nginx.ingress.kubernetes.io/canary-by-header-pattern"
#: where the canary route's settings are kept as zdu gave them (ingress-nginx spells them its own way)
CANARY_ROUTE_ANNOTATION = "zdu.gitlab.com/canary-route"


def canary_annotations(percent: int, cookie: str | None, header: str | None) -> dict[str, str]:
    """ingress-nginx's canary annotations for ``percent`` of requests and the opt-ins.

    ``canary-weight`` is a share of requests, whatever the pod counts. ``canary-by-cookie`` names the
    cookie (ingress-nginx routes it on the value ``always`` only). A ``header`` (``Name: value``) is
    matched by ``canary-by-header``/``canary-by-header-value``; without one, the ``Cookie`` header
    itself is matched against ``name=value`` (``canary-by-header-pattern``), so that GitLab.com's
    ``gitlab_canary=true`` reaches the canary as it is. ingress-nginx's precedence: header, cookie,
    weight.
    """
    annotations = {CANARY: "true", CANARY_WEIGHT: str(percent)}
    if cookie is not None:
        name, _, value = cookie.partition("=")
        annotations[CANARY_BY_COOKIE] = name
        if header is None:
            annotations[CANARY_BY_HEADER] = "Cookie"
            annotations[CANARY_BY_HEADER_PATTERN] = f"(^|;\\s*){re.escape(name)}={re.escape(value)}(;|$)"
    if header is not None:
        name, _, value = header.partition(":")
        annotations[CANARY_BY_HEADER] = name.strip()
        annotations[CANARY_BY_HEADER_VALUE] = value.strip()
    return annotations


def canary_ingress(
    ingress: Obj,
    name: str,
    service: str,
    port: int,
    route: Mapping[str, object],
    config: KubernetesPlatformConfig,
) -> Obj:
    """An ingress-nginx canary Ingress: ``ingress``'s hosts and paths, every backend ``service``.

    ingress-nginx pairs a canary Ingress with the main one by host and path, so the rules are
    copied as they are and only the backends change. ``route`` (group, percent, cookie, header) is
    kept in an annotation of zdu's own, read back by the router.
    """
    import json  # noqa: PLC0415

    source = ingress.get("spec", {})
    rules = copy.deepcopy(source.get("rules") or [{"http": {"paths": [{"path": "/", "pathType": "Prefix"}]}}])
    for rule in rules:
        for path in (rule.get("http") or {}).get("paths") or []:
            path["backend"] = {"service": {"name": service, "port": {"number": port}}}
    spec: Obj = {"rules": rules}
    if source.get("ingressClassName"):
        spec["ingressClassName"] = source["ingressClassName"]
    if source.get("tls"):
        spec["tls"] = copy.deepcopy(source["tls"])
    annotations = {
        key: value
        for key, value in (ingress.get("metadata", {}).get("annotations") or {}).items()
        if key == "kubernetes.io/ingress.class"
    }
    percent = route["percent"]
    cookie, header = route.get("cookie"), route.get("header")
    annotations.update(
        canary_annotations(
            int(percent) if isinstance(percent, int) else 0,
            cookie if isinstance(cookie, str) else None,
            header if isinstance(header, str) else None,
        )
    )
    annotations[CANARY_ROUTE_ANNOTATION] = json.dumps(dict(route), sort_keys=True)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": dict(MANAGED_BY),
            "annotations": annotations,
        },
        "spec": spec,
    }
