"""The configuration of the kubernetes platform (``[platform]`` in a target's TOML file)."""

from __future__ import annotations

import re
from typing import Any

import attrs

__all__ = ["KubernetesPlatformConfig"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PERCENT_OR_COUNT = re.compile(r"^(\d+%?)$")
#: an image reference: ``[registry[:port]/]repository[:tag][@digest]``, the repository in lowercase
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[a-z0-9]+:[a-f0-9]{32,})?$"
)


def _dns_label(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(
            f"{attribute.name} {value!r} is not a Kubernetes name (lowercase letters, digits and '-', "
            "at most 63 characters)"
        )


def _dns_labels(_instance: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    for name in value:
        if not _NAME.match(name):
            raise ValueError(f"{attribute.name}: {name!r} is not a Kubernetes name")


def _positive(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _surge(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not _PERCENT_OR_COUNT.match(value):
        raise ValueError(f"{attribute.name} must be a count or a percentage such as '10%', got {value!r}")


def _version_template(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        value.format(version="16.6.0")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"{attribute.name} {value!r} has a bad placeholder ({error}); the placeholder is {{version}}"
        ) from None


def _image_template(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        return
    _version_template(_instance, attribute, value)
    image = value.format(version="16.6.0")
    if not _IMAGE.match(image):
        raise ValueError(
            f"{attribute.name} {value!r} is not an image reference such as "
            "'registry.example.com/gitlab/gitlab-toolbox-ee:v{version}'"
        )


@attrs.frozen
class KubernetesPlatformConfig:
    """Where a GitLab chart deployment lives and how zdu acts on it. Defaults match the chart's names.

    :ivar namespace: the namespace of the release.
    :ivar deployment: the webservice Deployment the chart manages; groups of other versions are clones
        of it named ``<deployment>-<group>``.
    :ivar service: the Service in front of the webservice pods (its selector is the router).
    :ivar ingress: the ingress-nginx Ingress in front of the Service (affinity annotations go here).
    :ivar sidekiq_deployments: Deployments paused while migrations run, resumed first after them.
    :ivar hpa: the chart's HorizontalPodAutoscaler of the webservice Deployment (same name by default);
        zdu holds its scaling during an upgrade and hands it the serving Deployment back; when missing,
        nothing to do.
    :ivar toolbox_deployment: the Deployment whose pod template the migrations Job is built from, as the
        chart's migrations Job is: its init containers (``certificates``, ``configure``), volumes,
        environment, resources and image (retagged to the release, keeping registry, repository and
        flavour such as ``-ubi``); when missing, the newest of the chart's migrations Jobs
        (label ``app=migrations``).
    :ivar image_tag: the tag every container image of a group of ``{version}`` gets.
    :ivar toolbox_image: the migrations Job's image, overriding the one taken from the toolbox;
        ``{version}`` is the release; empty (the default): the toolbox's image, retagged.
    :ivar max_surge: ``maxSurge`` of every webservice Deployment zdu writes (GitLab advises ``10%``).
    :ivar max_unavailable: ``maxUnavailable`` of those Deployments (GitLab advises ``0``).
    :ivar rollout_timeout: seconds a Deployment change has to be rolled out and available.
    :ivar job_ttl: seconds a finished migrations Job is kept for inspection (``ttlSecondsAfterFinished``).
    :ivar lease_duration: seconds the upgrade Lease is valid without renewal (renewed every third).
    :ivar affinity_cookie: the cookie ingress-nginx pins clients with while affinity is on.
    :ivar affinity_max_age: ``session-cookie-max-age`` of that cookie, in seconds.
    :ivar assets_image: an image of ``{version}`` holding its fingerprinted assets at ``assets_path``.
    :ivar assets_path: where the assets are in ``assets_image``.
    :ivar assets_server_image: the web server that serves both versions' assets (port 8080, files
        under ``/usr/share/nginx/html``).
    :ivar preview_host: a host name for blue-green's preview Ingress; empty: no preview route (the
        pre-switch analysis is skipped).
    :ivar url: the URL users reach GitLab at; empty: ``https://`` and the Ingress's first host.
    :ivar api_url: the API server's URL without credentials (``kubectl proxy``); empty: the kubeconfig
        (``KUBECONFIG``, ``~/.kube/config``) or, inside a pod, its service account.
    :ivar context: the kubeconfig context to use; empty: the current one.
    :ivar request_attempts: tries of one API request on connection errors, 429 and 5xx.
    """

    namespace: str = attrs.field(default="gitlab", validator=_dns_label)
    deployment: str = attrs.field(default="gitlab-webservice-default", validator=_dns_label)
    service: str = attrs.field(default="gitlab-webservice-default", validator=_dns_label)
    ingress: str = attrs.field(default="gitlab-webservice-default", validator=_dns_label)
    sidekiq_deployments: list[str] = attrs.field(
        factory=lambda: ["gitlab-sidekiq-all-in-1-v2"], validator=_dns_labels
    )
    hpa: str = attrs.field(default="gitlab-webservice-default", validator=_dns_label)
    toolbox_deployment: str = attrs.field(default="gitlab-toolbox", validator=_dns_label)
    image_tag: str = attrs.field(default="v{version}", validator=_version_template)
    toolbox_image: str = attrs.field(default="", validator=_image_template)
    max_surge: str = attrs.field(default="10%", validator=_surge)
    max_unavailable: str = attrs.field(default="0", validator=_surge)
    rollout_timeout: float = attrs.field(default=600.0, validator=_positive)
    job_ttl: int = attrs.field(default=86400, validator=attrs.validators.ge(0))
    lease_duration: int = attrs.field(default=60, validator=attrs.validators.ge(3))
    affinity_cookie: str = "zdu_version"
    affinity_max_age: int = attrs.field(default=3600, validator=attrs.validators.ge(1))
    assets_image: str = attrs.field(
        default="registry.gitlab.com/gitlab-org/build/cng/gitlab-webservice-ee:v{version}",
        validator=_version_template,
    )
    assets_path: str = "/srv/gitlab/public/assets"
    assets_server_image: str = "nginxinc/nginx-unprivileged:1.27-alpine"
    preview_host: str = ""
    url: str = ""
    api_url: str = ""
    context: str = ""
    request_attempts: int = attrs.field(default=6, validator=attrs.validators.ge(1))

    def int_or_percent(self, value: str) -> int | str:
        """``"10%"`` stays a string, ``"0"`` becomes 0: what ``rollingUpdate`` takes."""
        return value if value.endswith("%") else int(value)
