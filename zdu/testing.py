"""Testing help for plugin authors: a pytest plugin.

Enable it in your ``conftest.py``::

    pytest_plugins = ["zdu.testing"]

and use the fixtures:

* ``zdu_plugin_manager``: a fresh plugin manager with every installed plugin loaded;
* ``zdu_bare_plugin_manager``: a fresh one with only the core's built-ins, for registering a plugin
  inline with :func:`register_inline`;
* ``zdu_state_dir``: a temporary state directory, also exported as ``ZDU_STATE_DIR``.

and, to test a strategy or a traffic layer without a fleet:

* :class:`MemoryPlatform`: a platform in memory with every capability (instance groups behind a
  router, previews, affinity, a canary split, scaling together, an asset store, a command host,
  Omnibus nodes), whose instances are ready the moment they are scaled up, and :func:`restricted`:
  the same platform seen through the base platform and the capabilities you name only, to prove a
  plugin needs no more than it declares;
* :func:`make_context`: an :class:`~zdu.context.UpgradeContext` over a platform, its journal events
  kept in :attr:`RecordedEvents.events`;
* :func:`rollout`, :func:`interrupt_rollout` and :func:`check_every_interruption`: run a strategy's
  rollout, stop it as a kill would at its n-th step, and resume it (or roll it back) from there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from zdu.context import UpgradeContext, UpgradeInfo
from zdu.errors import PlatformError, TargetBusy, UpgradeInterrupted
from zdu.migrations import CommandResult
from zdu.model import Release, Target, Version
from zdu.platform import (
    AFFINITY,
    ASSET_STORE,
    COMMAND_HOST,
    INSTANCE_GROUPS,
    OMNIBUS_NODES,
    PREVIEW_ROUTE,
    SCALE_TOGETHER,
    TRAFFIC_SPLIT,
    WEIGHTS_PER_INSTANCE,
    CanaryRoute,
    Instance,
    InstanceGroup,
)
from zdu.registry import ZduPluginManager, get_plugin_manager
from zdu.strategy import Strategy

__all__ = [
    "Interruption",
    "InterruptionOutcome",
    "MemoryAssetStore",
    "MemoryCommandHost",
    "MemoryPlatform",
    "MemoryRouter",
    "RecordedEvents",
    "check_every_interruption",
    "interrupt_rollout",
    "make_context",
    "register_inline",
    "restricted",
    "rollout",
    "rollout_steps",
]


def register_inline(manager: ZduPluginManager, plugin: Any, name: str | None = None) -> str:
    """Register ``plugin`` (a module, class or object with ``@hookimpl`` functions) on ``manager``.

    Returns the name it was registered under.
    """
    plugin_name = name or getattr(plugin, "__name__", None) or f"inline-{id(plugin)}"
    manager.register_plugin(plugin, plugin_name, distribution=f"inline:{plugin_name}")
    return plugin_name


@pytest.fixture
def zdu_plugin_manager() -> ZduPluginManager:
    """A fresh plugin manager with every installed plugin (entry points of group ``zdu``) loaded."""
    return get_plugin_manager()


@pytest.fixture
def zdu_bare_plugin_manager() -> ZduPluginManager:
    """A fresh plugin manager with only the core's built-ins: register your plugin inline."""
    return get_plugin_manager(entry_points=False)


@pytest.fixture
def zdu_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary state directory, exported as ``ZDU_STATE_DIR`` for the code under test."""
    state = tmp_path / "zdu-state"
    state.mkdir()
    monkeypatch.setenv("ZDU_STATE_DIR", str(state))
    yield state


# -- an in-memory platform ---------------------------------------------------------------------------


class MemoryRouter:
    """The router of a :class:`MemoryPlatform`: weights per instance, a preview, affinity, a canary split.

    Every change takes effect at once. :attr:`history` keeps every routing change in order, as
    ``(method, argument)``, for tests that check what a strategy asked for.
    """

    weight_semantics = WEIGHTS_PER_INSTANCE

    def __init__(self, url: str = "http://memory.invalid") -> None:
        self._url = url
        self._weights: dict[str, int] = {}
        self.preview: str | None = None
        self.affinity: str | None = None
        self.assets_routed = False
        self._canary: CanaryRoute | None = None
        self.history: list[tuple[str, object]] = []

    @property
    def url(self) -> str:
        """Where users would reach the deployment (nothing listens)."""
        return self._url

    def weights(self) -> Mapping[str, int]:
        """The weight of every group with one above 0."""
        return dict(self._weights)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Route by ``weights`` (groups left out get 0)."""
        for group, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise PlatformError(f"weight of group {group!r} must be an integer >= 0, got {weight!r}")
        self._weights = {group: weight for group, weight in weights.items() if weight > 0}
        self.history.append(("set_weights", dict(self._weights)))

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        """Whether the routing is ``weights``."""
        return self._weights == {group: weight for group, weight in weights.items() if weight > 0}

    def set_preview(self, group: str | None) -> str | None:
        """Make ``group`` reachable on a preview URL (``None`` removes it)."""
        self.preview = group
        self.history.append(("set_preview", group))
        return None if group is None else f"{self._url}/preview/{group}"

    def set_affinity(self, enabled: bool, scope: str = "session") -> None:
        """Pin clients to their group while ``enabled`` (recorded, nothing to pin here)."""
        self.affinity = scope if enabled else None
        self.history.append(("set_affinity", self.affinity))

    def check_affinity(self) -> None:
        """Affinity always works here."""

    def route_assets(self, enabled: bool) -> None:
        """Serve ``/assets/`` from the asset store while ``enabled``."""
        self.assets_routed = enabled
        self.history.append(("route_assets", enabled))

    def set_canary(
        self, group: str | None, percent: int = 0, cookie: str | None = None, header: str | None = None
    ) -> None:
        """Send ``percent`` of requests to ``group`` (``None`` removes the canary route)."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise PlatformError(f"canary percent must be an integer from 0 to 100, got {percent!r}")
        self._canary = None if group is None else CanaryRoute(group, percent, cookie, header)
        self.history.append(("set_canary", self._canary))

    def canary(self) -> CanaryRoute | None:
        """The canary route, if any."""
        return self._canary

    def remove_managed_routes(self) -> None:
        """Remove the preview, affinity, the assets route and the canary route."""
        self.preview, self.affinity, self.assets_routed, self._canary = None, None, False, None
        self.history.append(("remove_managed_routes", None))


class MemoryAssetStore:
    """An asset store that remembers which versions' assets it holds."""

    def __init__(self) -> None:
        self.published: list[Version] = []

    def publish(self, version: Version) -> None:
        """Add ``version``'s assets."""
        if version not in self.published:
            self.published.append(version)

    def versions(self) -> list[Version]:
        """The versions held, oldest first."""
        return sorted(self.published)

    def prune(self, keep: Sequence[Version]) -> None:
        """Forget every version not in ``keep``."""
        self.published = [v for v in self.published if v in keep]


class MemoryCommandHost:
    """A command executor that records what it is asked to run and answers ``exit_code``."""

    def __init__(self, exit_code: int = 0, output: str = "") -> None:
        self.exit_code = exit_code
        self.output = output
        self.commands: list[tuple[tuple[str, ...], dict[str, str | None]]] = []

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str | None],
        timeout: float,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Record ``argv`` and ``env``; answer :attr:`exit_code` and :attr:`output`."""
        self.commands.append((tuple(argv), dict(env)))
        for line in self.output.splitlines():
            if on_output is not None:
                on_output(line)
        return CommandResult(returncode=self.exit_code, output=self.output)


class MemoryPlatform:
    """A platform whose instances are entries in a dict, ready (and routed by weight) once scaled up.

    It serves ``version`` with ``replicas`` instances from the start. :attr:`fail_versions` never
    become ready (scaling them up raises :class:`~zdu.errors.ReadinessTimeout`, as a real platform
    would after its timeout); :meth:`kill` makes an instance die, for health checks.
    """

    def __init__(
        self,
        version: Version | str = "16.5.0",
        replicas: int = 3,
        *,
        fail_versions: Sequence[Version | str] = (),
        omnibus: bool = False,
    ) -> None:
        self.omnibus = omnibus
        self.router = MemoryRouter()
        self.assets: MemoryAssetStore | None = MemoryAssetStore()
        self.command_executor: MemoryCommandHost | None = MemoryCommandHost()
        self.fail_versions = {Version.parse(str(v)) for v in fail_versions}
        self._groups: dict[str, Version] = {}
        self._instances: dict[str, list[Instance]] = {}
        self._serial = 0
        self._lock = threading.Lock()
        self._holder: str | None = None
        first = Version.parse(str(version))
        self.inventory_version = first
        self.inventory = {
            "gitlab_rails": ["rails-1", "rails-2"],
            "gitlab_rails_primary": ["rails-1"],
            "sidekiq": ["sidekiq-1"],
        }
        self.nodes = {host: first for hosts in self.inventory.values() for host in hosts}
        self.drained: set[str] = set()
        self.playbooks: list[tuple[str, str]] = []
        self.scale(self.group_name(first), first, replicas)
        self.router.set_weights({self.group_name(first): 100})
        self.router.history.clear()

    @property
    def url(self) -> str:
        """Where users would reach the deployment (nothing listens)."""
        return self.router.url

    def group_name(self, version: Version) -> str:
        """``v16-5-0`` for 16.5.0."""
        return "v" + str(version).replace(".", "-")

    def groups(self) -> list[InstanceGroup]:
        """Every group, oldest version first, its instances routed when their group has a weight."""
        weights = self.router.weights()
        return sorted(
            (
                InstanceGroup(
                    name=name,
                    version=version,
                    instances=tuple(
                        attrs.evolve(i, routed=i.alive and i.ready and weights.get(name, 0) > 0)
                        for i in self._instances.get(name, [])
                    ),
                )
                for name, version in self._groups.items()
            ),
            key=lambda group: (group.version, group.name),
        )

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        """Make ``group`` have ``replicas`` ready instances of ``version`` (the newest leave first)."""
        from zdu.errors import ReadinessTimeout  # noqa: PLC0415 - only on this path

        if replicas < 0:
            raise PlatformError(f"cannot scale {group} to {replicas} replicas")
        known = self._groups.get(group)
        if known is not None and known != version:
            raise PlatformError(f"group {group} runs version {known}, not {version}")
        self._groups[group] = version
        instances = [i for i in self._instances.setdefault(group, []) if i.alive]
        if len(instances) < replicas and version in self.fail_versions:
            raise ReadinessTimeout(f"instances of {version} did not become ready")
        while len(instances) < replicas:
            self._serial += 1
            address = f"memory:{self._serial}"
            instances.append(
                Instance(f"{group}-{self._serial}", group, str(version), address, True, True, False)
            )
        self._instances[group] = instances[:replicas]
        return next(g for g in self.groups() if g.name == group)

    def scale_groups(self, changes: Sequence[tuple[str, Version, int]]) -> list[InstanceGroup]:
        """Scale each ``(group, version, replicas)`` in turn (capability ``scale-together``)."""
        return [self.scale(group, version, replicas) for group, version, replicas in changes]

    def remove_group(self, group: str) -> None:
        """Forget ``group`` and its weight."""
        self._groups.pop(group, None)
        self._instances.pop(group, None)
        weights = {name: weight for name, weight in self.router.weights().items() if name != group}
        if weights != self.router.weights():
            self.router.set_weights(weights)

    def kill(self, group: str) -> None:
        """Make the first instance of ``group`` die (the next health check reports it)."""
        instances = self._instances[group]
        instances[0] = attrs.evolve(instances[0], alive=False, ready=False)

    def serving_versions(self) -> list[Version]:
        """The versions users are routed to now: of routed groups, or of the Rails nodes (``omnibus``)."""
        if self.omnibus:
            rails = self.inventory["gitlab_rails"]
            return sorted({v for node, v in self.nodes.items() if node in rails and node not in self.drained})
        return sorted({g.version for g in self.groups() if g.routed > 0})

    def check_health(self) -> list[str]:
        """The instances that died."""
        return [f"instance {i.id} died" for g in self.groups() for i in g.instances if not i.alive]

    @contextlib.contextmanager
    def hold_lock(self, holder: str) -> Iterator[None]:
        """Hold the platform's lock; a second holder gets :class:`~zdu.errors.TargetBusy`."""
        with self._lock:
            if self._holder is not None:
                raise TargetBusy(f"the target is being upgraded by {self._holder}")
            self._holder = holder
        try:
            yield
        finally:
            self._holder = None

    def close(self) -> None:
        """Nothing to release."""

    # capability omnibus-nodes: an inventory of Rails and Sidekiq nodes changed by "playbooks"

    @property
    def inventory_file(self) -> str:
        """Where the inventory's version would be written."""
        return "inventory/vars.yml"

    def set_inventory_version(self, version: Version) -> None:
        """Set the inventory's ``gitlab_version``."""
        self.inventory_version = version

    def hosts(self, pattern: str) -> list[str]:
        """The hosts of group ``pattern``, or the host named so."""
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
        envvars: Mapping[str, str] | None = None,
    ) -> None:
        """Record the run; the hosts get ``extravars["gitlab_version"]`` when it is given."""
        self.playbooks.append((label, hosts))
        version = (extravars or {}).get("gitlab_version")
        for host in self.hosts(hosts):
            if version is not None:
                self.nodes[host] = Version.parse(str(version))

    def infrastructure(self, version: Version) -> None:
        """No infrastructure to change."""
        return None

    def node_version(self, node: str) -> Version | None:
        """The version ``node`` runs."""
        return self.nodes.get(node)

    def node_routed(self, node: str) -> bool:
        """Whether ``node`` takes traffic."""
        return node not in self.drained

    def drain_node(self, node: str, *, wait: bool = True) -> None:
        """Take ``node`` out of traffic."""
        self.drained.add(node)

    def return_node(self, node: str, *, undrain: bool = True) -> None:
        """Put ``node`` back (with ``undrain``)."""
        if undrain:
            self.drained.discard(node)


#: What the base platform and each capability show of a platform, and of its router.
BASE_MEMBERS = ("url", "serving_versions", "hold_lock", "check_health", "close")
ROUTER_BASE_MEMBERS = (
    "url",
    "weight_semantics",
    "weights",
    "set_weights",
    "verify_weights",
    "remove_managed_routes",
)
_GROUPS = ("router", "groups", "group_name", "scale", "remove_group")
PLATFORM_MEMBERS: Mapping[str, tuple[str, ...]] = {
    INSTANCE_GROUPS: _GROUPS,
    PREVIEW_ROUTE: _GROUPS,
    AFFINITY: _GROUPS,
    TRAFFIC_SPLIT: _GROUPS,
    SCALE_TOGETHER: (*_GROUPS, "scale_groups"),
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


def _view(name: str, target: object, members: Iterable[str], overrides: Mapping[str, object]) -> object:
    def member(attribute: str) -> property:
        if attribute in overrides:
            return property(lambda _self: overrides[attribute])
        return property(lambda _self: getattr(target, attribute))

    return type(name, (), {attribute: member(attribute) for attribute in sorted(set(members))})()


def restricted(platform: MemoryPlatform, capabilities: Iterable[str]) -> Any:
    """``platform`` seen through the base platform and ``capabilities`` only (their router members too).

    A plugin run over it that reaches for a capability it did not declare finds nothing there: the
    context's accessors raise naming the capability. Changes go to ``platform``, to check afterwards.
    """
    wanted = set(capabilities)
    router_members = [*ROUTER_BASE_MEMBERS, *(m for c in wanted for m in ROUTER_MEMBERS.get(c, ()))]
    router = _view("RestrictedRouter", platform.router, router_members, {})
    members = [*BASE_MEMBERS, *(m for c in wanted for m in PLATFORM_MEMBERS[c])]
    return _view("RestrictedPlatform", platform, members, {"router": router})


# -- strategies under test ---------------------------------------------------------------------------


@attrs.define
class RecordedEvents:
    """The journal events a context recorded: ``(kind, message, data)`` in order."""

    events: list[tuple[str, str, dict[str, Any]]] = attrs.field(factory=list)

    def __call__(self, kind: str, message: str, data: dict[str, Any]) -> None:
        """Record one event (the signature of ``UpgradeContext.record_event``)."""
        self.events.append((kind, message, data))

    def steps(self) -> list[str]:
        """The actions of the steps that finished."""
        return [message for kind, message, _ in self.events if kind == "step-finished"]


def make_context(
    platform: Any,
    release: Version | str,
    *,
    from_version: Version | str | None = None,
    strategy: str = "under-test",
    replicas: int | None = None,
    target: str = "test",
) -> UpgradeContext:
    """An :class:`~zdu.context.UpgradeContext` for an upgrade of ``platform`` to ``release``, with no probe.

    ``from_version`` defaults to the version the platform serves now; ``replicas`` to the size of its
    group. Its journal is a :class:`RecordedEvents` (``ctx.record_event.events``).
    """
    release_version = Version.parse(str(release))
    if from_version is None:
        serving = platform.serving_versions()
        if len(serving) != 1:
            raise ValueError(f"the platform serves {serving}: say from_version")
        start = serving[0]
    else:
        start = Version.parse(str(from_version))
    if replicas is None:
        replicas = next((g.replicas for g in platform.groups() if g.version == start), 1)
    return UpgradeContext(
        info=UpgradeInfo(
            id="test-upgrade",
            target=target,
            from_version=str(start),
            to_version=str(release_version),
            strategy=strategy,
        ),
        target=Target(name=target, platform="memory", version=start),
        release=Release(release_version),
        from_version=start,
        platform=platform,
        record_event=RecordedEvents(),
        replicas=replicas,
        gate_interval=0.0,
    )


class Interruption(UpgradeInterrupted):
    """Raised by :func:`interrupt_rollout` as the orchestrator would be killed at a step."""


def rollout(strategy: Strategy, ctx: UpgradeContext) -> None:
    """Run ``strategy``'s rollout and finalize over ``ctx``, in phase order."""
    ctx.phase = "rollout"
    strategy.rollout(ctx)
    ctx.phase = "finalize"
    strategy.finalize(ctx)


def rollout_steps(strategy: Strategy, ctx: UpgradeContext) -> int:
    """How many steps ``strategy``'s rollout and finalize take over ``ctx`` (it runs them)."""
    rollout(strategy, ctx)
    events = ctx.record_event.events if isinstance(ctx.record_event, RecordedEvents) else []
    return sum(1 for kind, _, _ in events if kind == "step-started")


def interrupt_rollout(strategy: Strategy, ctx: UpgradeContext, at: int, *, after: bool = False) -> str:
    """Run ``strategy``'s rollout and stop it when its ``at``-th step (from 0) starts, or ends with ``after``.

    That is where a SIGKILL of the orchestrator leaves a real upgrade: the step's intent journaled
    (and, with ``after``, the step done) but nothing after it. Returns the step's action. Raises
    ``ValueError`` when the rollout has fewer steps.
    """
    record = ctx.record_event
    seen = -1
    stopped = ""
    kind_to_stop = "step-finished" if after else "step-started"

    def recording(kind: str, message: str, data: dict[str, Any]) -> None:
        nonlocal seen, stopped
        record(kind, message, data)
        if kind == "step-started":
            seen += 1
        if kind == kind_to_stop and seen == at:
            stopped = message
            raise Interruption(f"interrupted at step {at}: {message}")

    ctx.record_event = recording
    try:
        rollout(strategy, ctx)
    except Interruption:
        return stopped
    finally:
        ctx.record_event = record
    raise ValueError(f"the rollout has only {seen + 1} steps, none at {at}")


@attrs.frozen
class InterruptionOutcome:
    """What one interruption left and what resuming (or rolling back) made of it."""

    step: int
    action: str
    after: bool
    how: str
    serving: tuple[Version, ...]
    groups: tuple[str, ...]


def check_every_interruption(
    strategy: Strategy,
    make_platform: Callable[[], Any],
    release: Version | str,
    *,
    rollback: bool = False,
) -> list[InterruptionOutcome]:
    """Interrupt ``strategy``'s rollout at the start and at the end of every step, then finish it.

    For each point, on a fresh platform from ``make_platform``: the rollout is interrupted there, then
    a new context (as a new orchestrator process would make) resumes it (``rollout`` again, then
    ``finalize``) or, with ``rollback``, rolls it back. Asserts that only the release (or only the
    version it started from) serves afterwards, in one group; returns every outcome.
    """
    release_version = Version.parse(str(release))
    total = rollout_steps(strategy, make_context(make_platform(), release_version))
    outcomes = []
    for step in range(total):
        for after in (False, True):
            platform = make_platform()
            first = make_context(platform, release_version)
            action = interrupt_rollout(strategy, first, step, after=after)
            # a resumed upgrade reads where it started from, and the fleet's size, from its journal
            ctx = make_context(
                platform, release_version, from_version=first.from_version, replicas=first.replicas
            )
            start = first.from_version
            if rollback:
                ctx.phase = "rollback"
                strategy.rollback(ctx)
                expected = start
            else:
                rollout(strategy, ctx)
                expected = release_version
            groups = tuple(g.name for g in platform.groups())
            serving = tuple(platform.serving_versions())
            where = f"interrupted {'after' if after else 'at'} step {step} ({action})"
            assert serving == (expected,), f"{where}: {serving} serve, not only {expected}"
            assert groups == (platform.group_name(expected),), f"{where}: groups {groups} are left"
            outcomes.append(
                InterruptionOutcome(
                    step, action, after, "rollback" if rollback else "resume", serving, groups
                )
            )
    return outcomes
