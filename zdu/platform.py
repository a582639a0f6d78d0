"""The Platform interface: a small base every platform provides, and capabilities beside it.

:class:`Platform` is what the orchestrator needs whatever the strategy: the versions that serve users
now, health, the target's lock, the URL users reach. Everything else is a **capability**, a protocol of
its own with a stable name (:data:`CAPABILITIES`) that only some platforms offer:

========================  =====================  ==========================================================
name                      protocol               what it is
========================  =====================  ==========================================================
``instance-groups``       :class:`InstanceGroups`  groups of instances per version, scaled by zdu, behind a
                                                 :class:`Router` (``recreate``, ``rolling``, ...)
``scale-together``        :class:`ScalesTogether`  two groups scaled as one change: starts beside drains
``preview-route``         :class:`PreviewRoute`  the router reaches one group outside user traffic
``affinity``              :class:`Affinity`      the router pins clients to a group (``sticky-nginx``)
``traffic-split``         :class:`SplitsTraffic`  the router sends an exact share to one group (``canary``)
``asset-store``           :class:`ServesAssets`  an :class:`AssetStore`, and a router route to it
``command-host``          :class:`CommandHost`   where migration commands run (a Job, a deploy node)
``omnibus-nodes``         :class:`OmnibusNodes`  Omnibus nodes changed by playbooks, drained one at a time
========================  =====================  ==========================================================

A platform plugin declares what it provides (:attr:`zdu.plugins.PlatformPlugin.provides`); strategies,
traffic layers and migration runners declare what they require (``requires``). A configuration that
pairs them with a platform lacking one is refused when it is loaded, naming both. A plugin reaches a
capability through its context (:meth:`zdu.context.UpgradeContext.instance_groups` and its siblings,
:meth:`zdu.migrations.MigrationEnv.capability`), never by downcasting to a platform class.

Every method that changes something is idempotent: called twice with the same arguments, the second call
finds the work done and returns. That is what lets an interrupted upgrade be resumed from the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from zdu.errors import UsageError
from zdu.model import Target, Version

if TYPE_CHECKING:
    from zdu.migrations import CommandExecutor

__all__ = [
    "AFFINITY",
    "ASSET_STORE",
    "CAPABILITIES",
    "COMMAND_HOST",
    "INSTANCE_GROUPS",
    "OMNIBUS_NODES",
    "PREVIEW_ROUTE",
    "SCALE_TOGETHER",
    "TRAFFIC_SPLIT",
    "WEIGHTS_ON_OFF",
    "WEIGHTS_PER_GROUP",
    "WEIGHTS_PER_INSTANCE",
    "Affinity",
    "AssetStore",
    "CanaryRoute",
    "Capability",
    "CommandHost",
    "DryRunsChanges",
    "Infrastructure",
    "InfrastructureChange",
    "Instance",
    "InstanceGroup",
    "InstanceGroups",
    "OmnibusNodes",
    "Platform",
    "PlatformEnv",
    "PreviewRoute",
    "RecordsChanges",
    "ReportsLockLoss",
    "RoutedGroups",
    "Router",
    "RoutesAssets",
    "ScalesTogether",
    "ServesAssets",
    "SplitsTraffic",
    "platform_provides",
    "remove_managed_routes",
    "require_capability",
    "routed_versions",
    "running_versions",
    "weight_semantics",
]

#: Capability names: what platform plugins declare in ``provides`` and other plugins in ``requires``.
INSTANCE_GROUPS = "instance-groups"
PREVIEW_ROUTE = "preview-route"
AFFINITY = "affinity"
TRAFFIC_SPLIT = "traffic-split"
ASSET_STORE = "asset-store"
COMMAND_HOST = "command-host"
OMNIBUS_NODES = "omnibus-nodes"
SCALE_TOGETHER = "scale-together"

#: What a Router's weights mean (:func:`weight_semantics`). ``per-instance``: every instance of a group
#: gets the group's weight, so a group's share grows with its instance count (nginx, HAProxy);
#: ``per-group``: the group as a whole gets its weight, whatever its size; ``on-off``: a group takes
#: traffic or not, and groups that do share it by their instance counts (a Kubernetes Service selector).
WEIGHTS_PER_INSTANCE = "per-instance"
WEIGHTS_PER_GROUP = "per-group"
WEIGHTS_ON_OFF = "on-off"


@attrs.frozen
class Instance:
    """One running instance (a process, a pod) of one version.

    :ivar id: stable identifier, unique within the platform.
    :ivar group: the name of the group it belongs to.
    :ivar address: where it listens (``host:port``), for diagnostics.
    :ivar ready: its readiness check answers.
    :ivar alive: its process (pod) is running.
    :ivar routed: the router sends it traffic.
    """

    id: str
    group: str
    version: str
    address: str
    ready: bool
    alive: bool
    routed: bool


@attrs.frozen
class InstanceGroup:
    """The instances of one version."""

    name: str
    version: Version
    instances: tuple[Instance, ...] = ()

    @property
    def replicas(self) -> int:
        """How many instances the group has (alive or not)."""
        return len(self.instances)

    @property
    def ready(self) -> int:
        """How many instances are alive and ready."""
        return sum(1 for i in self.instances if i.alive and i.ready)

    @property
    def routed(self) -> int:
        """How many instances the router sends traffic to."""
        return sum(1 for i in self.instances if i.routed)


@attrs.frozen
class PlatformEnv:
    """What a platform factory is given besides its own configuration.

    :ivar target: the deployment the platform manages.
    :ivar state_dir: a directory the platform may keep state in (per target).
    :ivar release: the version being rolled out, when the platform is built for an upgrade (a
        platform may take images for it from it, such as a migrations Job's).
    :ivar offline_snapshot: plan against this snapshot of the platform's objects instead of the live
        platform (``zdu plan --offline``): change nothing, record every change in
        :meth:`RecordsChanges.recorded_changes`. A platform that cannot plan offline refuses it.
    """

    target: Target
    state_dir: Path
    release: Version | None = None
    offline_snapshot: Path | None = None


@runtime_checkable
class RecordsChanges(Protocol):
    """A platform that can plan offline: it records the objects it would send instead of sending them."""

    def recorded_changes(self) -> list[dict[str, Any]]:
        """Every object (or change) sent so far, in order, as the platform's own JSON."""
        ...


@runtime_checkable
class DryRunsChanges(Protocol):
    """A platform that can have its changes checked without applying them (``zdu plan`` on the live platform).

    .. versionadded:: 0.1
    """

    def dry_run(self) -> AbstractContextManager[None]:
        """Within the block, every change is sent to the platform's own checks and none is applied.

        ``zdu plan`` (without ``--offline``) runs in it, so that planning changes nothing while the
        platform still validates what would be sent (a Kubernetes server dry run: validation and
        admission). Reads see the platform as it is. A change the platform refuses raises
        :class:`~zdu.errors.PlatformError` with the platform's message.
        """
        ...


@runtime_checkable
class ReportsLockLoss(Protocol):
    """A platform whose upgrade lock can be lost while held (a lease another holder took over).

    .. versionadded:: 0.1
    """

    def on_lock_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` once, from any thread, if the lock ``hold_lock`` holds is lost.

        Registered by the orchestrator right after it took the lock; called at once when the lock was
        lost already. The orchestrator then pauses the upgrade at its next safe point, recording
        ``reason``. The registration ends when the lock is left.
        """
        ...


@runtime_checkable
class Router(Protocol):
    """Decides which instance groups receive traffic; changed only gracefully (no dropped request).

    Modelled on Argo Rollouts' traffic router plugins (``SetWeight``, ``VerifyWeight``,
    ``RemoveManagedRoutes``). This is what every router does; what only some can do is a capability
    of its own that the router implements beside it: :class:`PreviewRoute`, :class:`Affinity`,
    :class:`SplitsTraffic`, :class:`RoutesAssets`.

    **What weights mean** differs per router, and :attr:`weight_semantics` says which:

    * ``per-instance`` (:data:`WEIGHTS_PER_INSTANCE`): every ready instance of a group gets the group's
      weight, so a group's share grows with its instance count (nginx on ``local``, ``sim``);
    * ``per-group`` (:data:`WEIGHTS_PER_GROUP`): the group as a whole gets its weight, whatever its size;
    * ``on-off`` (:data:`WEIGHTS_ON_OFF`): a weight above 0 only means "takes traffic"; groups that do
      share it by their instance counts (a Kubernetes Service selector behind ingress-nginx, HAProxy's
      ready/drain states on ``get``).

    A strategy that needs a share to mean the same everywhere requires ``traffic-split``
    (:class:`SplitsTraffic`) instead of reading weights.
    """

    @property
    def weight_semantics(self) -> str:
        """What this router's weights mean: ``per-instance``, ``per-group`` or ``on-off`` (see above)."""
        ...

    def weights(self) -> Mapping[str, int]:
        """The weight of every group the router knows; 0 means out of the router."""
        ...

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Route traffic by ``weights`` (group name to weight; groups left out get 0).

        Called by strategies during ``rollout`` and ``rollback``. An instance that is not ready never
        receives traffic. Returns once the new routing is in force (for nginx: the reload has taken
        effect), so that the caller may then stop instances that are no longer routed. Idempotent.
        """
        ...

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        """Whether the router, as it runs now, routes by ``weights``."""
        ...

    def remove_managed_routes(self) -> None:
        """Remove every route zdu added for an upgrade (previews, affinity, asset routes). Idempotent.

        Called by the orchestrator in ``cleanup`` and at the end of a rollback.
        """
        ...


@runtime_checkable
class PreviewRoute(Protocol):
    """Capability ``preview-route``: a router that reaches one group directly, outside user traffic."""

    def set_preview(self, group: str | None) -> str | None:
        """Make ``group`` reachable directly, outside user traffic; return its URL (``None`` removes it).

        Used by ``blue-green`` to let the probes verify the new set before the switch. Idempotent.
        """
        ...


@runtime_checkable
class Affinity(Protocol):
    """Capability ``affinity``: a router that pins a client to the group that served it (sticky sessions)."""

    def set_affinity(self, enabled: bool, scope: str = "session") -> None:
        """Pin requests to the group that served a client, while ``enabled`` (the ``sticky-nginx`` layer).

        Used by the ``sticky-nginx`` layer: on in ``prepare``, off in ``finalize`` and on rollback. While
        on, a response names the group that served it (a cookie) and later requests follow it.

        ``scope="session"`` (sticky sessions): a page request follows it as long as that group has a
        weight above 0 and a ready instance; an asset request as long as the group has a ready instance
        at any weight, so that a page rendered by a group that just left the router still finds its
        assets. A client new to the router, or whose group is gone, is routed by weight and pinned to
        where it landed.

        ``scope="assets"``: only asset requests follow it (the cookie names the group of the last page,
        lives briefly and is sent with assets only); pages and every other request go by weight.

        A router may keep a group's last instances serving its pinned asset requests for a short grace
        before they drain. Off, every request is routed by weight. Changed gracefully; idempotent. A
        router that cannot honour ``scope`` raises :class:`~zdu.errors.PlatformError` naming it.
        """
        ...

    def check_affinity(self) -> None:
        """Raise :class:`~zdu.errors.PreflightError` with the reason when sticky sessions cannot work here.

        Called in ``preflight`` (through the ``sticky-nginx`` layer's plan), before anything changes:
        ingress-nginx, for one, ignores affinity on an Ingress with ``service-upstream: "true"``.
        """
        ...


@runtime_checkable
class RoutesAssets(Protocol):
    """A router that can send ``/assets/`` to the platform's :class:`AssetStore` (part of ``asset-store``)."""

    def route_assets(self, enabled: bool) -> None:
        """Serve ``/assets/`` from the platform's :class:`AssetStore` instead of the instances.

        Used by the ``assets-shim`` layer, which publishes every serving version's assets to the
        store first. Changed gracefully; idempotent.
        """
        ...


def weight_semantics(router: Router) -> str:
    """What ``router``'s weights mean (:attr:`Router.weight_semantics`).

    One of :data:`WEIGHTS_PER_INSTANCE`, :data:`WEIGHTS_PER_GROUP`, :data:`WEIGHTS_ON_OFF`.
    """
    return str(router.weight_semantics)


@attrs.frozen
class CanaryRoute:
    """The canary route a :class:`SplitsTraffic` router runs: which group, what share, which opt-ins.

    :ivar group: the canary group.
    :ivar percent: the share of user requests (0..100) sent to it, whatever the groups' sizes.
    :ivar cookie: ``name=value``: a request carrying this cookie always goes to the canary.
    :ivar header: ``Name: value``: a request carrying this header always goes to the canary.
    """

    group: str
    percent: int
    cookie: str | None = None
    header: str | None = None


@runtime_checkable
class SplitsTraffic(Protocol):
    """Capability ``traffic-split``: a router that sends an exact share of user requests to one group.

    Weights mean different things per router (:attr:`Router.weight_semantics`); a share does not:
    ``percent`` of the requests go to the canary group whatever the number of instances on either side,
    like ingress-nginx's ``canary-weight`` or nginx's ``split_clients``. Every other request goes by the
    router's weights to the other groups. Used by the ``canary`` strategy.
    """

    def set_canary(
        self, group: str | None, percent: int = 0, cookie: str | None = None, header: str | None = None
    ) -> None:
        """Send ``percent`` (0..100) of user requests to ``group``; ``None`` removes the canary route.

        Every request carrying ``cookie`` (``name=value``) or ``header`` (``Name: value``) goes to the
        canary too. Returns once the routing is in force. The other groups keep their weights for the
        rest. Gracefully changed; idempotent.
        """
        ...

    def canary(self) -> CanaryRoute | None:
        """The canary route in force, or ``None``."""
        ...


@runtime_checkable
class AssetStore(Protocol):
    """A place that serves fingerprinted assets of several versions at once (the assets shim's backend).

    On the local platform a directory nginx serves; on Kubernetes a Deployment of an assets image.
    """

    def publish(self, version: Version) -> None:
        """Add ``version``'s assets next to those already published. Idempotent."""
        ...

    def versions(self) -> list[Version]:
        """The versions whose assets are published, oldest first."""
        ...

    def prune(self, keep: Sequence[Version]) -> None:
        """Remove the assets of every version not in ``keep``. Idempotent."""
        ...


@runtime_checkable
class Platform(Protocol):
    """What every platform provides: what the orchestrator needs whatever the strategy.

    The rest (instance groups, a router's features, an asset store, a command host, Omnibus nodes) are
    capabilities a platform may provide beside it (see the module's documentation).
    """

    @property
    def url(self) -> str:
        """The URL users (and the probes) reach the deployment at."""
        ...

    def serving_versions(self) -> Sequence[Version]:
        """The versions that serve users now, oldest first: those of the groups with routed, ready instances.

        The orchestrator reads it to learn the version a target runs (exactly one before an upgrade) and
        to check, after the rollout, that only the release serves. Reads only.
        """
        ...

    def hold_lock(self, holder: str) -> AbstractContextManager[None]:
        """Hold the target's upgrade lock where the target lives, for the length of an upgrade.

        The journal already refuses a second upgrade recorded in the same journal; this lock also
        holds between release pipelines on different machines (on Kubernetes, a Lease the holder
        renews). Entering raises :class:`~zdu.errors.TargetBusy` naming the current holder when another
        one holds it.
        """
        ...

    def check_health(self) -> list[str]:
        """Problems seen now (an instance that died, one that stopped being ready); empty when healthy."""
        ...

    def close(self) -> None:
        """Release client resources. Leaves the fleet running."""
        ...


@runtime_checkable
class RoutedGroups(Protocol):
    """Groups of instances per version behind a :class:`Router`, read only.

    Not a capability of its own: the read side of :class:`InstanceGroups`, which a platform whose
    instances zdu does not scale may still offer (``get``: Rails nodes grouped by the version they
    answer). The orchestrator reads it, when a platform has it, for the release's share of traffic and
    for instances of older versions still running.
    """

    @property
    def router(self) -> Router:
        """The router in front of the instances."""
        ...

    def groups(self) -> Sequence[InstanceGroup]:
        """Every group the platform runs now, oldest version first."""
        ...

    def group_name(self, version: Version) -> str:
        """The name the group of ``version`` has (or will have) on this platform."""
        ...


@runtime_checkable
class InstanceGroups(RoutedGroups, Protocol):
    """Capability ``instance-groups``: groups of instances per version that zdu scales, behind a Router.

    What ``recreate``, ``rolling``, ``blue-green`` and ``canary`` act on. The router's extra features
    are capabilities of their own (:class:`PreviewRoute`, :class:`Affinity`, :class:`SplitsTraffic`,
    :class:`RoutesAssets`).
    """

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        """Make ``group`` (of ``version``) have ``replicas`` instances; create it when missing.

        Scaling up starts instances and returns once they are ready (they join the router by the
        group's weight only then), or raises :class:`~zdu.errors.ReadinessTimeout` after stopping those
        that did not become ready. Scaling down drains first: the instance leaves the router, its
        in-flight requests finish (bounded by a drain timeout), then it is stopped gracefully.
        Idempotent.
        """
        ...

    def remove_group(self, group: str) -> None:
        """Drain and stop every instance of ``group`` and forget it. Idempotent."""
        ...


@runtime_checkable
class ScalesTogether(InstanceGroups, Protocol):
    """Capability ``scale-together``: several groups scaled as one change (``rolling``'s batches).

    The new instances are spawned first, the leaving ones leave the router while those start, and the
    new ones are routed once ready (never before the leaving ones left); their start-up and the
    leaving ones' drain go on side by side. Without it, ``rolling`` scales one group after the other.
    """

    def scale_groups(self, changes: Sequence[tuple[str, Version, int]]) -> list[InstanceGroup]:
        """Scale each ``(group, version, replicas)`` as :meth:`InstanceGroups.scale` would, together.

        Returns the groups in the order of ``changes``. Idempotent.
        """
        ...


@runtime_checkable
class ServesAssets(Protocol):
    """Capability ``asset-store`` (with a router that :class:`RoutesAssets`): the assets shim's backend.

    The ``assets-shim`` layer publishes every serving version's assets to :attr:`assets`, then routes
    ``/assets/`` to it (:meth:`RoutesAssets.route_assets` of :attr:`router`).
    """

    @property
    def router(self) -> Router:
        """The router in front of the instances; it :class:`RoutesAssets` too."""
        ...

    @property
    def assets(self) -> AssetStore | None:
        """The platform's asset store; ``None`` when its configuration leaves it out (the layer says so)."""
        ...


@runtime_checkable
class CommandHost(Protocol):
    """Capability ``command-host``: a place of its own where migration commands (``gitlab-rake``) run.

    Kubernetes runs them as a Job from the release's toolbox image. A platform without it leaves
    runners to run their commands on this machine.
    """

    @property
    def command_executor(self) -> CommandExecutor:
        """Where this target's migration commands run."""
        ...


@runtime_checkable
class InfrastructureChange(Protocol):
    """One resource change an :class:`Infrastructure` plan holds (Terraform's ``resource_changes``)."""

    @property
    def address(self) -> str:
        """The resource's address (``module.gitlab.aws_instance.rails[0]``)."""
        ...

    @property
    def actions(self) -> tuple[str, ...]:
        """What the plan does to it: ``create``, ``update``, ``delete`` (a replace is delete + create)."""
        ...


@runtime_checkable
class Infrastructure(Protocol):
    """The infrastructure code of an :class:`OmnibusNodes` fleet for one version (GET's Terraform)."""

    def plan(self) -> Sequence[InfrastructureChange]:
        """Plan to a saved file and return its changes. Changes nothing."""
        ...

    def refuse_destruction(self, changes: Sequence[Any]) -> None:
        """Raise :class:`~zdu.errors.ZduError` naming every resource ``changes`` destroys or replaces."""
        ...

    def apply_saved_plan(self) -> None:
        """Apply exactly the plan :meth:`plan` saved."""
        ...


@runtime_checkable
class OmnibusNodes(Protocol):
    """Capability ``omnibus-nodes``: Omnibus nodes changed by playbooks, Rails nodes drained one at a time.

    A GET environment (the ``get`` platform): an inventory of hosts, playbooks (or roles) run on host
    patterns, infrastructure code, and a load balancer in front of the Rails nodes that drains one node
    and puts it back. What the ``get`` strategy and the ``get-post-deployment`` runner act on.
    """

    @property
    def inventory_file(self) -> str:
        """The inventory file that records the fleet's version (for plans and the journal)."""
        ...

    def set_inventory_version(self, version: Version) -> None:
        """Record ``version`` as the fleet's version in the inventory. Idempotent."""
        ...

    def hosts(self, pattern: str) -> list[str]:
        """The inventory's hosts matching ``pattern`` (a group name or host names), in inventory order."""
        ...

    def run_playbook(
        self,
        label: str,
        hosts: str,
        *,
        playbook: str | None = None,
        role: str | None = None,
        extravars: Mapping[str, Any] | None = None,
        on_task: Any = None,
        envvars: Mapping[str, str] | None = None,
    ) -> None:
        """Run ``playbook`` (or ``role``) on the host pattern ``hosts``; raise on failure.

        ``on_task``, when given, is called with every task's result as it finishes (the platform's own
        type, for the plugin that made the platform: the ``get`` plugin journals them). ``envvars``
        are set in the playbook's environment (GET reads ``SKIP_POST_DEPLOYMENT_MIGRATIONS`` there).
        """
        ...

    def infrastructure(self, version: Version) -> Infrastructure | None:
        """The infrastructure code for ``version``; ``None`` when the fleet has none configured."""
        ...

    def node_version(self, node: str) -> Version | None:
        """The version Rails node ``node`` answers; ``None`` when it does not answer."""
        ...

    def node_routed(self, node: str) -> bool:
        """Whether the load balancer sends Rails node ``node`` user traffic now."""
        ...

    def drain_node(self, node: str, *, wait: bool = True) -> None:
        """Take Rails node ``node`` out of the load balancer; with ``wait``, until nothing is in flight."""
        ...

    def return_node(self, node: str, *, undrain: bool = True) -> None:
        """Wait until ``node`` is ready itself, put it back (``undrain``), wait until it is routed again."""
        ...


@attrs.frozen
class Capability:
    """A capability's stable name, its protocols, and where a platform shows it.

    :ivar name: what plugins declare (``provides``, ``requires``).
    :ivar platform_protocols: the runtime-checkable protocols the platform implements.
    :ivar router_protocols: those its router implements (the platform then has :class:`InstanceGroups`,
        or :class:`ServesAssets`' router).
    :ivar summary: one line for ``zdu plugins`` and the plugin guide.
    """

    name: str
    platform_protocols: tuple[type[Any], ...]
    router_protocols: tuple[type[Any], ...]
    summary: str

    def provided_by(self, platform: object) -> bool:
        """Whether ``platform`` (and its router) implement every protocol of the capability."""
        if not all(isinstance(platform, protocol) for protocol in self.platform_protocols):
            return False
        if not self.router_protocols:
            return True
        if not isinstance(platform, (RoutedGroups, ServesAssets)):
            return False
        return all(isinstance(platform.router, protocol) for protocol in self.router_protocols)


#: Every capability zdu knows, by name.
CAPABILITIES: Mapping[str, Capability] = {
    c.name: c
    for c in (
        Capability(INSTANCE_GROUPS, (InstanceGroups,), (), "instance groups zdu scales, behind a Router"),
        Capability(
            PREVIEW_ROUTE, (InstanceGroups,), (PreviewRoute,), "a route to one group, outside user traffic"
        ),
        Capability(
            AFFINITY, (InstanceGroups,), (Affinity,), "the router pins a client to a group (sticky sessions)"
        ),
        Capability(
            TRAFFIC_SPLIT, (InstanceGroups,), (SplitsTraffic,), "the router sends an exact share to one group"
        ),
        Capability(
            ASSET_STORE, (ServesAssets,), (RoutesAssets,), "an asset store for several versions, routed to"
        ),
        Capability(COMMAND_HOST, (CommandHost,), (), "a place of its own where migration commands run"),
        Capability(
            SCALE_TOGETHER, (ScalesTogether,), (), "two groups scaled as one change: starts beside drains"
        ),
        Capability(
            OMNIBUS_NODES, (OmnibusNodes,), (), "Omnibus nodes changed by playbooks, drained one by one"
        ),
    )
}


def platform_provides(platform: object) -> frozenset[str]:
    """The names of every capability ``platform`` implements (checked against the protocols)."""
    return frozenset(name for name, capability in CAPABILITIES.items() if capability.provided_by(platform))


def require_capability(platform: object, name: str, who: str) -> None:
    """Raise :class:`~zdu.errors.UsageError` naming ``who`` unless ``platform`` provides capability ``name``.

    Configuration loading refuses a platform lacking a declared capability; this catches a plugin that
    reaches for one it did not declare, or a platform that declares one it does not implement.
    """
    if not CAPABILITIES[name].provided_by(platform):
        raise UsageError(
            f"{who} needs the platform capability {name!r}, which {type(platform).__name__} does not provide"
        )


def routed_versions(platform: RoutedGroups) -> list[Version]:
    """The versions of the groups with a weight above 0 and a ready instance, oldest first.

    :meth:`Platform.serving_versions` for a platform with :class:`RoutedGroups`.
    """
    weights = platform.router.weights()
    return sorted({g.version for g in platform.groups() if weights.get(g.name, 0) > 0 and g.ready > 0})


def running_versions(platform: Platform) -> list[Version]:
    """Versions with an instance running, routed or not (only those serving without group listings)."""
    if isinstance(platform, RoutedGroups):
        return sorted({g.version for g in platform.groups() if g.replicas > 0})
    return sorted(platform.serving_versions())


def remove_managed_routes(platform: Platform) -> None:
    """Remove the routes zdu added (:meth:`Router.remove_managed_routes`); nothing without a router."""
    if isinstance(platform, RoutedGroups):
        platform.router.remove_managed_routes()
