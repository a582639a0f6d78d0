"""Options of the ``get`` platform, the ``get`` strategy and the ``get-post-deployment`` runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from zdu.plugins import Secret
from zdu_get.haproxy import runtime_address

__all__ = [
    "COMPONENT_HOSTS",
    "COMPONENT_ORDER",
    "VERSION_OVERRIDES",
    "AnsibleGroup",
    "GetPlatformConfig",
    "GetPostDeploymentConfig",
    "GetStrategyConfig",
    "RailsBackend",
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


#: The host pattern of each component by default: GET's inventory group names (Redis may be one group
#: or GET's split ``redis_cache`` / ``redis_persistent``).
COMPONENT_HOSTS = {"redis": "redis:redis_cache:redis_persistent"}

#: Inventory variables with which GET installs a package that ``gitlab_version`` does not choose (a
#: repository package name, a package URL or a package file): when one is set, zdu cannot express a
#: release by ``gitlab_version`` and refuses in preflight.
VERSION_OVERRIDES = (
    "gitlab_repo_package",
    "gitlab_deb_download_url",
    "gitlab_rpm_download_url",
    "gitlab_deb_host_path",
    "gitlab_rpm_host_path",
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

    Empty fields take the component's default: playbook ``playbooks/<component>.yml`` (GET's
    ``ansible/playbooks/``), hosts ``<component>`` (GET's inventory group; Redis:
    ``redis:redis_cache:redis_persistent``). Hosts set here that match nothing are refused.
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


def _server_template(_instance: Any, _attribute: attrs.Attribute[str], value: str) -> None:
    if "{host}" not in value and "{index}" not in value:
        raise ValueError(f"servers must contain {{host}} or {{index}}, got {value!r}")


def _runtime_api(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        runtime_address(value)
    except ValueError as error:
        raise ValueError(f"{attribute.name}: {error}") from None
    if not value:
        raise ValueError(f"{attribute.name} must be a socket's path or tcp://HOST:PORT, got ''")


@attrs.frozen
class RailsBackend:
    """An HAProxy backend that lists the Rails nodes, and how its servers are named.

    :ivar backend: the backend's name (GET: ``gitlab-rails``; the registry's and the internal HAProxy's
        backends list the Rails nodes too).
    :ivar servers: each server's name: ``{host}`` is the inventory host name, ``{index}`` the host's
        position (from 1) in the sorted Rails group (GET: ``gitlab-rails{index}``).
    :ivar socket: the runtime API of the HAProxy that has it (a socket's path or ``tcp://HOST:PORT``);
        empty: ``haproxy_socket``.
    """

    backend: str
    servers: str = attrs.field(default="{host}", validator=_server_template)
    socket: str | None = attrs.field(default=None, validator=attrs.validators.optional(_runtime_api))


@attrs.frozen
class GetPlatformConfig:
    """A GET environment: its Terraform and Ansible, and the HAProxy in front of its Rails nodes.

    :ivar url: where users (and the probes) reach GitLab: the HAProxy frontend.
    :ivar haproxy_socket: HAProxy's runtime API (``stats socket ... level admin``): a UNIX socket's
        path on this machine, or ``tcp://HOST:PORT`` for an HAProxy elsewhere (GET's runs in a container
        on ``haproxy_external``: ``stats socket ipv4@ADDRESS:PORT level admin``).
    :ivar backend: the HAProxy backend of the Rails nodes that users reach (versions, serving); its
        server names are the inventory's host names unless ``rails_backends`` names it.
    :ivar rails_backends: every backend that lists the Rails nodes (GET: ``gitlab-rails`` with servers
        ``gitlab-rails{index}``, the registry's, the internal HAProxy's); a node is drained from and
        returned to all of them. Empty: ``backend`` alone, servers named as the inventory's hosts. The
        mapping is checked in preflight: a backend whose servers are not exactly the Rails hosts'
        is refused before anything changes.
    :ivar rails_group: the inventory group of the Rails nodes (``{index}`` numbers its sorted hosts).
    :ivar gather_facts: gather every host's facts into a fact cache before the first playbook, so
        that a run limited to one host still sees the others' facts (GET's templates use them).
    :ivar version_overrides: inventory variables that install a package ``gitlab_version`` does not
        choose; one set on any host is refused in preflight.
    :ivar ansible_dir: the Ansible project directory (GET's ``ansible/``: playbooks and roles).
    :ivar inventory: the environment's inventory (a file or a directory).
    :ivar inventory_vars: the vars file that sets ``gitlab_version`` (GET's ``inventory/vars.yml``).
    :ivar terraform_dir: the environment's Terraform directory; empty: no Terraform step.
    :ivar terraform_vars: variables given to ``terraform plan``; ``{version}`` is the release.
    :ivar terraform_allow: resource addresses (``*`` wildcards) a version upgrade may change in place;
        any other change in the plan (an in-place update of a machine type, a replace, a destroy) is
        refused before anything is applied.
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
    haproxy_socket: str = attrs.field(validator=_runtime_api)
    ansible_dir: Path
    inventory: Path
    inventory_vars: Path
    backend: str = "gitlab_rails"
    rails_backends: list[RailsBackend] = attrs.field(factory=list)
    rails_group: str = "gitlab_rails"
    gather_facts: bool = True
    version_overrides: list[str] = attrs.field(factory=lambda: list(VERSION_OVERRIDES))
    terraform_dir: Path | None = None
    terraform_vars: dict[str, str] = attrs.field(factory=dict)
    terraform_allow: list[str] = attrs.field(factory=list)
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
    :ivar deploy_node: the Rails node that runs the regular migrations; empty: the one host of
        ``primary_group`` (GET's Rails role migrates on ``gitlab_rails_primary``).
    :ivar primary_group: the inventory group of the Rails node GET migrates on.
    :ivar praefect_primary_group: the inventory group of the Praefect primary, upgraded first.
    :ivar other_groups: inventory groups whose hosts no component upgrades (HAProxy, monitoring);
        any other host no component covers is refused in preflight, never skipped silently.
    :ivar allow_downgrade: the playbooks can install an older package (GET's cannot: it installs
        without allowing a downgrade); without it, a rollback that would need one is refused before
        it changes anything, and a Rails node that failed on the release is left drained, not
        reinstalled.
    """

    drain: bool = True
    groups: dict[str, AnsibleGroup] = attrs.field(factory=dict, validator=_known_components)
    deploy_node: str = ""
    primary_group: str = "gitlab_rails_primary"
    praefect_primary_group: str = "praefect_primary"
    other_groups: list[str] = attrs.field(
        factory=lambda: ["haproxy_external", "haproxy_internal", "monitor", "ungrouped"]
    )
    allow_downgrade: bool = False

    def group(self, component: str) -> AnsibleGroup:
        """The component's playbook (or role) and hosts, defaults filled in."""
        configured = self.groups.get(component, AnsibleGroup())
        playbook = configured.playbook or ("" if configured.role else f"playbooks/{component}.yml")
        hosts = configured.hosts or COMPONENT_HOSTS.get(component, component)
        return AnsibleGroup(playbook=playbook, role=configured.role, hosts=hosts)

    def configured_hosts(self, component: str) -> bool:
        """Whether the component's hosts were set explicitly (then matching nothing is an error)."""
        return bool(self.groups.get(component, AnsibleGroup()).hosts)


@attrs.frozen
class GetPostDeploymentConfig:
    """Options of the ``get-post-deployment`` migration runner.

    :ivar playbook: the playbook that runs ``gitlab-rake db:migrate`` on the deploy node.
    :ivar role: a role instead of a playbook.
    :ivar deploy_node: the host it runs on; empty: the one host of ``primary_group``.
    :ivar primary_group: the inventory group of the Rails node GET migrates on (``gitlab_rails_primary``).

    It runs without ``SKIP_POST_DEPLOYMENT_MIGRATIONS`` in its environment (the rollout sets it).
    """

    playbook: str = "playbooks/post_deployment_migrations.yml"
    role: str = ""
    deploy_node: str = ""
    primary_group: str = "gitlab_rails_primary"
