"""In-memory platforms that provide exactly the capabilities asked for, for the capability tests.

:class:`MemoryFleet` implements every capability over plain data (instance groups behind a router with
every router feature, an asset store, a command host, Omnibus nodes). :func:`restricted` shows a strategy
only the members of the base platform and of the capabilities given: a plugin that reaches for any other
capability finds nothing there, so a test run over it proves the plugin needs no more than it declares.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from zdu.migrations import CommandResult
from zdu.model import Version
from zdu.platform import (
    AFFINITY,
    ASSET_STORE,
    COMMAND_HOST,
    INSTANCE_GROUPS,
    OMNIBUS_NODES,
    PREVIEW_ROUTE,
    TRAFFIC_SPLIT,
    WEIGHTS_PER_INSTANCE,
    CanaryRoute,
    Instance,
    InstanceGroup,
)

BASE_MEMBERS = ("url", "serving_versions", "hold_lock", "check_health", "close")
ROUTER_BASE_MEMBERS = (
    "weight_semantics",
    "weights",
    "set_weights",
    "verify_weights",
    "remove_managed_routes",
)
PLATFORM_MEMBERS: Mapping[str, tuple[str, ...]] = {
    INSTANCE_GROUPS: ("router", "groups", "group_name", "scale", "remove_group"),
    PREVIEW_ROUTE: ("router", "groups", "group_name", "scale", "remove_group"),
    AFFINITY: ("router", "groups", "group_name", "scale", "remove_group"),
    TRAFFIC_SPLIT: ("router", "groups", "group_name", "scale", "remove_group"),
    ASSET_STORE: ("router", "assets"),
    COMMAND_HOST: ("command_executor",),
    OMNIBUS_NODES: (
        "inventory_file",
        "set_inventory_version",
        "hosts",
        "run_playbook",
        "infrastructure",
        "node_version",
        "node_routed",
        "drain_node",
        "return_node",
    ),
}
ROUTER_MEMBERS: Mapping[str, tuple[str, ...]] = {
    PREVIEW_ROUTE: ("set_preview",),
    AFFINITY: ("set_affinity", "check_affinity"),
    TRAFFIC_SPLIT: ("set_canary", "canary"),
    ASSET_STORE: ("route_assets",),
}


class MemoryRouter:
    """Weights per group and every optional router feature, as plain data."""

    weight_semantics = WEIGHTS_PER_INSTANCE

    def __init__(self) -> None:
        self.routing: dict[str, int] = {}
        self.preview: str | None = None
        self.affinity: bool = False
        self.assets_routed = False
        self.canary_route: CanaryRoute | None = None

    def weights(self) -> Mapping[str, int]:
        return dict(self.routing)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        self.routing = {name: weight for name, weight in weights.items() if weight > 0}

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        return self.routing == {name: weight for name, weight in weights.items() if weight > 0}

    def remove_managed_routes(self) -> None:
        self.preview, self.affinity, self.assets_routed, self.canary_route = None, False, False, None

    def set_preview(self, group: str | None) -> str | None:
        self.preview = group
        return None if group is None else f"http://preview.invalid/{group}"

    def set_affinity(self, enabled: bool, scope: str = "session") -> None:
        self.affinity = enabled

    def check_affinity(self) -> None:
        """Affinity always works here."""

    def set_canary(
        self, group: str | None, percent: int = 0, cookie: str | None = None, header: str | None = None
    ) -> None:
        self.canary_route = None if group is None else CanaryRoute(group, percent, cookie, header)

    def canary(self) -> CanaryRoute | None:
        return self.canary_route

    def route_assets(self, enabled: bool) -> None:
        self.assets_routed = enabled


class MemoryAssets:
    """An asset store as a list of versions."""

    def __init__(self) -> None:
        self.published: list[Version] = []

    def publish(self, version: Version) -> None:
        if version not in self.published:
            self.published.append(version)

    def versions(self) -> list[Version]:
        return sorted(self.published)

    def prune(self, keep: Sequence[Version]) -> None:
        self.published = [v for v in self.published if v in keep]


class RecordingExecutor:
    """A command host that records the commands it is given."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str | None],
        timeout: float,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        self.commands.append(list(argv))
        return CommandResult(0, "")


class MemoryFleet:
    """Every capability over plain data: instance groups and Omnibus nodes of a starting version."""

    def __init__(self, version: Version, replicas: int = 2, *, omnibus: bool = False) -> None:
        self.omnibus = omnibus
        self.router = MemoryRouter()
        self.replicas: dict[str, tuple[Version, int]] = {}
        self.assets = MemoryAssets()
        self.command_executor = RecordingExecutor()
        self.inventory_version = version
        self.inventory = {"gitlab_rails": ["rails-1", "rails-2"], "sidekiq": ["sidekiq-1"]}
        self.nodes = {host: version for hosts in self.inventory.values() for host in hosts}
        self.drained: set[str] = set()
        self.playbooks: list[tuple[str, str]] = []
        self.scale(self.group_name(version), version, replicas)
        self.router.set_weights({self.group_name(version): 1})

    # base
    @property
    def url(self) -> str:
        return "http://fleet.invalid"

    def serving_versions(self) -> list[Version]:
        if self.omnibus:
            return sorted(
                {v for n, v in self.nodes.items() if n.startswith("rails") and n not in self.drained}
            )
        weights = self.router.weights()
        return sorted({v for name, (v, n) in self.replicas.items() if n > 0 and weights.get(name, 0) > 0})

    def hold_lock(self, holder: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def check_health(self) -> list[str]:
        return []

    def close(self) -> None:
        """Nothing to release."""

    # instance groups
    def group_name(self, version: Version) -> str:
        return f"v{version}"

    def groups(self) -> list[InstanceGroup]:
        weights = self.router.weights()
        return [
            InstanceGroup(
                name,
                version,
                tuple(
                    Instance(f"{name}-{i}", name, str(version), "-", True, True, weights.get(name, 0) > 0)
                    for i in range(count)
                ),
            )
            for name, (version, count) in sorted(self.replicas.items(), key=lambda item: item[1][0])
        ]

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        self.replicas[group] = (version, replicas)
        return next(g for g in self.groups() if g.name == group)

    def remove_group(self, group: str) -> None:
        self.replicas.pop(group, None)
        self.router.routing.pop(group, None)

    # Omnibus nodes
    @property
    def inventory_file(self) -> str:
        return "inventory/vars.yml"

    def set_inventory_version(self, version: Version) -> None:
        self.inventory_version = version

    def hosts(self, pattern: str) -> list[str]:
        return list(self.inventory.get(pattern, [pattern] if pattern in self.nodes else []))

    def run_playbook(
        self,
        label: str,
        hosts: str,
        *,
        playbook: str | None = None,
        role: str | None = None,
        extravars: Mapping[str, Any] | None = None,
        on_task: Any = None,
    ) -> None:
        self.playbooks.append((label, hosts))
        version = (extravars or {}).get("gitlab_version")
        for host in self.hosts(hosts):
            if version is not None:
                self.nodes[host] = Version.parse(str(version))

    def infrastructure(self, version: Version) -> None:
        return None

    def node_version(self, node: str) -> Version | None:
        return self.nodes.get(node)

    def node_routed(self, node: str) -> bool:
        return node not in self.drained

    def drain_node(self, node: str, *, wait: bool = True) -> None:
        self.drained.add(node)

    def return_node(self, node: str, *, undrain: bool = True) -> None:
        if undrain:
            self.drained.discard(node)


def _view(name: str, target: object, members: Iterable[str], overrides: Mapping[str, object]) -> object:
    def member(attribute: str) -> property:
        if attribute in overrides:
            return property(lambda _self: overrides[attribute])
        return property(lambda _self: getattr(target, attribute))

    return type(name, (), {attribute: member(attribute) for attribute in sorted(set(members))})()


def restricted(fleet: MemoryFleet, capabilities: Iterable[str]) -> Any:
    """``fleet`` seen through the base platform and ``capabilities`` only (their router members too)."""
    wanted = set(capabilities)
    router_members = [*ROUTER_BASE_MEMBERS, *(m for c in wanted for m in ROUTER_MEMBERS.get(c, ()))]
    router = _view("RestrictedRouter", fleet.router, router_members, {})
    members = [*BASE_MEMBERS, *(m for c in wanted for m in PLATFORM_MEMBERS[c])]
    platform = _view("RestrictedPlatform", fleet, members, {"router": router})
    return platform
