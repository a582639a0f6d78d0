"""Options of the ``get`` platform, the ``get`` strategy and the ``get-post-deployment`` runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from zdu.plugins import Secret

__all__ = [
    "COMPONENT_ORDER",
    "AnsibleGroup",
    "GetPlatformConfig",
    "GetPostDeploymentConfig",
    "GetStrategyConfig",
]

#: GitLab's zero-downtime order for an Omnibus multi-node upgrade, back to front (Rails in the middle:
#: the deploy node, then the others one at a time).
COMPONENT_ORDER = (
    "consul",
    "postgres",
    "pgbouncer",
    "redis",
    "gitaly",
    "praefect",
    "gitlab_rails",
    "sidekiq",
)


def _positive(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be above 0, got {value!r}")


def _path_or_empty(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value and not value.startswith("/"):
        raise ValueError(f"{attribute.name} must start with '/' (or be empty: none), got {value!r}")


def _http_url(_instance: Any, _attribute: attrs.Attribute[str], value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// URL, got {value!r}")


@attrs.frozen
class AnsibleGroup:
    """What upgrades one component: a playbook or a role (in the project directory), on a host pattern.

    Empty fields take the component's default: playbook ``<component>.yml``, hosts ``<component>``
    (GET's playbook and inventory group names).
    """

    playbook: str = ""
    role: str = ""
    hosts: str = ""

    def __attrs_post_init__(self) -> None:
        if self.playbook and self.role:
            raise ValueError(
                f"give a playbook or a role, not both (playbook {self.playbook!r}, role {self.role!r})"
            )


def _known_components(
    _instance: Any, _attribute: attrs.Attribute[dict[str, AnsibleGroup]], value: dict[str, AnsibleGroup]
) -> None:
    unknown = sorted(set(value) - set(COMPONENT_ORDER))
    if unknown:
        raise ValueError(
            f"unknown component {', '.join(map(repr, unknown))} (known: {', '.join(COMPONENT_ORDER)})"
        )


@attrs.frozen
class GetPlatformConfig:
    """A GET environment: its Terraform and Ansible, and the HAProxy in front of its Rails nodes.

    :ivar url: where users (and the probes) reach GitLab: the HAProxy frontend.
    :ivar haproxy_socket: HAProxy's runtime API socket (``stats socket ... level admin``).
    :ivar backend: the HAProxy backend of the Rails nodes; its server names are the inventory's host names.
    :ivar ansible_dir: the Ansible project directory (GET's ``ansible/``: playbooks and roles).
    :ivar inventory: the environment's inventory (a file or a directory).
    :ivar inventory_vars: the vars file that sets ``gitlab_version`` (GET's ``inventory/vars.yml``).
    :ivar terraform_dir: the environment's Terraform directory; empty: no Terraform step.
    :ivar terraform_vars: variables given to ``terraform plan``; ``{version}`` is the release.
    :ivar version_path: the path on each Rails node that answers its version as JSON ``{"version": ...}``.
    :ivar version_token: a token sent as ``PRIVATE-TOKEN`` to ``version_path`` (never logged).
    :ivar drain_timeout: seconds to wait for a drained node's sessions to reach 0 (or its requests in
        flight, see ``inflight_path``).
    :ivar inflight_path: the path on each Rails node that answers JSON ``{"requests": R, ...}``, its HTTP
        requests in flight (websockets not counted). A drained node is done once HAProxy counts no
        session on it *or* it answers 0 requests here: a websocket, a session that lasts, does not hold
        the drain (the node's SIGTERM closes it). A node that answers anything else (404, not JSON, no
        connection) is done only when its sessions reach 0. Empty: sessions only.
    :ivar ready_timeout: seconds to wait for an upgraded node to answer ``/-/readiness`` and be UP.
    """

    url: str = attrs.field(validator=_http_url)
    haproxy_socket: Path
    ansible_dir: Path
    inventory: Path
    inventory_vars: Path
    backend: str = "gitlab_rails"
    terraform_dir: Path | None = None
    terraform_vars: dict[str, str] = attrs.field(factory=dict)
    version_path: str = "/api/v4/version"
    version_token: Secret | None = None
    drain_timeout: float = attrs.field(default=60.0, validator=_positive)
    ready_timeout: float = attrs.field(default=300.0, validator=_positive)
    inflight_path: str = attrs.field(default="/-/inflight", validator=_path_or_empty)


@attrs.frozen
class GetStrategyConfig:
    """Options of the ``get`` strategy.

    :ivar drain: take each Rails node out of HAProxy before its upgrade and put it back once ready
        (what zdu adds); ``false`` upgrades the way GET alone does: stop the node, rely on health checks.
    :ivar groups: per component (``consul`` ... ``sidekiq``), the playbook or role and host pattern.
    :ivar deploy_node: the Rails node that runs the regular migrations; empty: the first Rails host.
    """

    drain: bool = True
    groups: dict[str, AnsibleGroup] = attrs.field(factory=dict, validator=_known_components)
    deploy_node: str = ""

    def group(self, component: str) -> AnsibleGroup:
        """The component's playbook (or role) and hosts, defaults filled in."""
        configured = self.groups.get(component, AnsibleGroup())
        playbook = configured.playbook or ("" if configured.role else f"{component}.yml")
        return AnsibleGroup(playbook=playbook, role=configured.role, hosts=configured.hosts or component)


@attrs.frozen
class GetPostDeploymentConfig:
    """Options of the ``get-post-deployment`` migration runner.

    :ivar playbook: the playbook that runs ``gitlab-rake db:migrate`` on the deploy node.
    :ivar role: a role instead of a playbook.
    :ivar deploy_node: the host it runs on; empty: the first host of ``rails_hosts``.
    :ivar rails_hosts: the Rails nodes' host pattern.
    """

    playbook: str = "post_deployment_migrations.yml"
    role: str = ""
    deploy_node: str = ""
    rails_hosts: str = "gitlab_rails"
