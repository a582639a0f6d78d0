"""The Platform interface: what rollout strategies and traffic layers act on.

A Platform runs *instance groups*: the instances of one version of the application. A Router in front
of them decides which groups receive traffic. Strategies are written once over these two protocols, so
``rolling`` and ``blue-green`` work on every platform that implements them (``local``: processes behind
a real nginx; ``kubernetes``: Deployments, Services, Ingresses).

Every method that changes something is idempotent: called twice with the same arguments, the second call
finds the work done and returns. That is what lets an interrupted upgrade be resumed from the journal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from zdu.model import Target, Version

if TYPE_CHECKING:
    from zdu.migrations import CommandExecutor

__all__ = [
    "WEIGHTS_ON_OFF",
    "WEIGHTS_PER_GROUP",
    "WEIGHTS_PER_INSTANCE",
    "AssetStore",
    "CanaryRoute",
    "Instance",
    "InstanceGroup",
    "Platform",
    "PlatformEnv",
    "RecordsChanges",
    "Router",
    "SplitsTraffic",
    "weight_semantics",
]

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
class Router(Protocol):
    """Decides which instance groups receive traffic; changed only gracefully (no dropped request).

    Modelled on Argo Rollouts' traffic router plugins (``SetWeight``, ``VerifyWeight``,
    ``RemoveManagedRoutes``).
    """

    @property
    def url(self) -> str:
        """The URL users (and the probes) reach the deployment at."""
        ...

    def weights(self) -> Mapping[str, int]:
        """The weight of every group the router knows; 0 means out of the router."""
        ...

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Route traffic by ``weights`` (group name to weight; groups left out get 0).

        Called by strategies during ``rollout`` and ``rollback``. Within a group, every ready instance
        gets the group's weight; an instance that is not ready never receives traffic. Returns once the
        new routing is in force (for nginx: the reload has taken effect), so that the caller may then
        stop instances that are no longer routed. Idempotent.
        """
        ...

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        """Whether the router, as it runs now, routes by ``weights``."""
        ...

    def set_preview(self, group: str | None) -> str | None:
        """Make ``group`` reachable directly, outside user traffic; return its URL (``None`` removes it).

        Used by ``blue-green`` to let the probes verify the new set before the switch.
        """
        ...

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

    def route_assets(self, enabled: bool) -> None:
        """Serve ``/assets/`` from the platform's :class:`AssetStore` instead of the instances.

        Used by the ``assets-shim`` layer, which publishes every serving version's assets to the
        store first. Changed gracefully; idempotent.
        """
        ...

    def remove_managed_routes(self) -> None:
        """Remove every route zdu added for an upgrade (previews, affinity, asset routes). Idempotent."""
        ...


def weight_semantics(router: object) -> str:
    """What ``router``'s weights mean: its ``weight_semantics`` attribute, else ``per-instance``.

    One of :data:`WEIGHTS_PER_INSTANCE`, :data:`WEIGHTS_PER_GROUP`, :data:`WEIGHTS_ON_OFF`. A strategy
    that needs a share of traffic to mean the same everywhere uses :class:`SplitsTraffic` instead.
    """
    semantics = getattr(router, "weight_semantics", WEIGHTS_PER_INSTANCE)
    return str(semantics)


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
    """A Router that sends an exact share of user requests to one group (a canary), on every platform.

    Weights mean different things per router (:func:`weight_semantics`); a share does not: ``percent``
    of the requests go to the canary group whatever the number of instances on either side, like
    ingress-nginx's ``canary-weight`` or nginx's ``split_clients``. Every other request goes by the
    router's weights to the other groups. Used by the ``canary`` strategy.
    """

    @property
    def weight_semantics(self) -> str:
        """What this router's weights mean: ``per-instance``, ``per-group`` or ``on-off``."""
        ...

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
    """Runs instance groups and owns the Router in front of them."""

    @property
    def router(self) -> Router:
        """The router in front of the instances."""
        ...

    @property
    def assets(self) -> AssetStore | None:
        """The platform's assets service, or ``None`` when it has none.

        The ``assets-shim`` layer refuses to run on a platform without one.
        """
        ...

    @property
    def command_executor(self) -> CommandExecutor | None:
        """Where migration commands (``gitlab-rake``) run for this target; ``None``: on this machine.

        Kubernetes runs them as a Job from the release's toolbox image, an Omnibus fleet on its deploy
        node.
        """
        ...

    def groups(self) -> Sequence[InstanceGroup]:
        """Every group the platform runs now, oldest version first."""
        ...

    def group_name(self, version: Version) -> str:
        """The name the group of ``version`` has (or will have) on this platform."""
        ...

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
