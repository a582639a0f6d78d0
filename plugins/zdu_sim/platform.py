"""The ``sim`` platform: a cell whose instances are timers, kept in one JSON file per cell.

An instance "starts" by being recorded with the moment it becomes ready (``start_seconds`` later) and
"drains" by leaving the router and waiting ``drain_seconds``; the platform really waits, scaled by
``time_scale`` (0.001 turns a minute into 60 ms), so that an upgrade takes time the way a real one
does and a fleet's concurrency and bake times mean something. Versions named in ``fail_versions``
fail the way ``failure`` says: their instances never become ready (the rollout times out and rolls
back) or they die ``crash_after`` seconds after becoming ready (a gate or the bake sees it).

The state lives in ``<state dir>/sim.json`` and is written on every change, so a new process (``zdu
fleet resume`` after a kill) finds each cell as the killed one left it. A cell with no state file is
created on first use, serving ``target.version`` with ``replicas`` ready instances. The file is
replaced by a rename (readers never see half of it) but not fsync'd: it must survive the process,
not the machine, and a thousand cells writing a few dozen times each would otherwise spend their
time waiting for the disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs

from zdu.plugins import (
    WEIGHTS_PER_INSTANCE,
    Instance,
    InstanceGroup,
    PlatformEnv,
    PlatformError,
    ReadinessTimeout,
    Version,
    file_lock,
    routed_versions,
)

__all__ = ["FAILURES", "SimPlatform", "SimPlatformConfig", "SimRouter"]

#: How an instance of a version in ``fail_versions`` fails.
FAILURES = ("never-ready", "crash")


def _versions(instance: SimPlatformConfig, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for text in value:
        Version.parse(text)  # raises VersionError naming the text


@attrs.frozen
class SimPlatformConfig:
    """Options of ``sim`` (times in simulated seconds; real waits are these times ``time_scale``).

    :ivar replicas: instances a new cell starts with.
    :ivar start_seconds: how long an instance takes to become ready.
    :ivar drain_seconds: how long an instance takes to drain once out of the router.
    :ivar time_scale: real seconds per simulated second (1.0: real time).
    :ivar ready_timeout: how long scaling up waits for readiness before it gives up.
    :ivar fail_versions: versions whose instances fail.
    :ivar failure: how they fail: ``never-ready`` or ``crash`` (die ``crash_after`` after readiness).
    :ivar crash_after: seconds a crashing instance serves before it dies.
    """

    replicas: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    start_seconds: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    drain_seconds: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    time_scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    ready_timeout: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    fail_versions: tuple[str, ...] = attrs.field(default=(), validator=_versions)
    failure: str = attrs.field(default="never-ready", validator=attrs.validators.in_(FAILURES))
    crash_after: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))


class SimPlatform:
    """A :class:`zdu.platform.Platform` of simulated instances, state in ``<state dir>/sim.json``."""

    def __init__(self, config: SimPlatformConfig, env: PlatformEnv) -> None:
        self.config = config
        self.env = env
        self.state_dir = env.state_dir
        self.path = env.state_dir / "sim.json"
        self._lock = threading.RLock()
        self._state: dict[str, Any] | None = None
        self._router = SimRouter(self)

    # -- state ---------------------------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """The cell's state (read from its file, or created serving ``target.version``)."""
        with self._lock:
            if self._state is None:
                try:
                    self._state = json.loads(self.path.read_text(encoding="utf-8"))
                except FileNotFoundError:
                    self._state = self._new_state()
                    self.save()
            return self._state

    def _new_state(self) -> dict[str, Any]:
        version = self.env.target.version
        name = self.group_name(version)
        now = time.time()
        instances = [
            {"id": f"{name}-{n}", "ready_at": now, "draining": False} for n in range(self.config.replicas)
        ]
        return {
            "groups": {name: {"version": str(version), "instances": instances}},
            "weights": {name: 100},
            "serial": self.config.replicas,
            "affinity": False,
            "preview": None,
            "assets_routed": False,
            "work_seconds": 0.0,
        }

    def save(self) -> None:
        """Write the state (rename over the old file; see the module's note on fsync)."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".sim.json-{os.getpid()}-{threading.get_ident()}")
            temporary.write_text(json.dumps(self.state), encoding="utf-8")
            temporary.replace(self.path)

    def _sleep(self, simulated: float) -> None:
        real = simulated * self.config.time_scale
        if real > 0:
            time.sleep(real)
            self.state["work_seconds"] = self.state.get("work_seconds", 0.0) + real

    def _fails(self, version: str) -> bool:
        return any(Version.parse(v) == Version.parse(version) for v in self.config.fail_versions)

    # -- the Platform protocol -----------------------------------------------------------------------

    @property
    def router(self) -> SimRouter:
        """The simulated router."""
        return self._router

    @property
    def url(self) -> str:
        """``sim://`` and the target's name."""
        return self._router.url

    def serving_versions(self) -> list[Version]:
        """The versions of the groups with a weight and a ready instance."""
        return routed_versions(self)

    def group_name(self, version: Version) -> str:
        """``v`` and the version with dashes (``16.6.0`` is ``v16-6-0``)."""
        return "v" + "".join(c if c.isalnum() else "-" for c in str(version).lower())

    def _instance(self, group: str, version: str, record: Mapping[str, Any], now: float) -> Instance:
        fails = self._fails(version)
        alive = not (
            fails
            and self.config.failure == "crash"
            and now >= record["ready_at"] + self.config.crash_after * self.config.time_scale
        )
        ready = alive and now >= record["ready_at"] and not (fails and self.config.failure == "never-ready")
        weight = self.state["weights"].get(group, 0)
        return Instance(
            id=record["id"],
            group=group,
            version=version,
            address=f"sim:{record['id']}",
            ready=ready,
            alive=alive,
            routed=ready and weight > 0 and not record["draining"],
        )

    def groups(self) -> list[InstanceGroup]:
        """Every group, oldest version first."""
        now = time.time()
        with self._lock:
            groups = [
                InstanceGroup(
                    name=name,
                    version=Version.parse(group["version"]),
                    instances=tuple(
                        self._instance(name, group["version"], r, now) for r in group["instances"]
                    ),
                )
                for name, group in self.state["groups"].items()
            ]
        return sorted(groups, key=lambda g: (g.version, g.name))

    def _group(self, name: str) -> InstanceGroup:
        return next(g for g in self.groups() if g.name == name)

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        """Start (wait ``start_seconds``) or drain (wait ``drain_seconds``) instances of ``group``."""
        if replicas < 0:
            raise PlatformError(f"cannot scale {group} to {replicas} replicas")
        with self._lock:
            groups = self.state["groups"]
            known = groups.get(group)
            if known is not None and Version.parse(known["version"]) != version:
                raise PlatformError(f"group {group} runs version {known['version']}, not {version}")
            if known is None:
                known = groups[group] = {"version": str(version), "instances": []}
            self._forget_dead(group)
            running = known["instances"]
            if len(running) < replicas:
                self._start(group, known, replicas - len(running))
            elif len(running) > replicas:
                self._drain(known, running[replicas:])
            return self._group(group)

    def _forget_dead(self, group: str) -> None:
        now = time.time()
        known = self.state["groups"][group]
        alive = [r for r in known["instances"] if self._instance(group, known["version"], r, now).alive]
        if len(alive) != len(known["instances"]):
            known["instances"] = alive
            self.save()

    def _start(self, group: str, known: dict[str, Any], count: int) -> None:
        now = time.time()
        new = []
        for _ in range(count):
            new.append(
                {
                    "id": f"{group}-{self.state['serial']}",
                    "ready_at": now + self.config.start_seconds * self.config.time_scale,
                    "draining": False,
                }
            )
            self.state["serial"] += 1
        known["instances"].extend(new)
        self.save()
        if self._fails(known["version"]) and self.config.failure == "never-ready":
            self._sleep(self.config.ready_timeout)
            known["instances"] = [r for r in known["instances"] if r not in new]
            self.save()
            raise ReadinessTimeout(
                f"{count} instances of {group} ({known['version']}) were not ready within "
                f"{self.config.ready_timeout:g}s (simulated)"
            )
        self._sleep(self.config.start_seconds)
        self.save()

    def _drain(self, known: dict[str, Any], leaving: Sequence[dict[str, Any]]) -> None:
        for record in leaving:
            record["draining"] = True
        self.save()
        self._sleep(self.config.drain_seconds)
        ids = {r["id"] for r in leaving}
        known["instances"] = [r for r in known["instances"] if r["id"] not in ids]
        self.save()

    def remove_group(self, group: str) -> None:
        """Drain every instance of ``group`` and forget it. Idempotent."""
        with self._lock:
            known = self.state["groups"].get(group)
            if known is None:
                return
            if known["instances"]:
                self._drain(known, list(known["instances"]))
            del self.state["groups"][group]
            self.state["weights"].pop(group, None)
            self.save()

    def hold_lock(self, holder: str) -> AbstractContextManager[None]:
        """Hold ``<state dir>/upgrade.lock`` (flock) for an upgrade."""
        return file_lock(self.state_dir / "upgrade.lock", self.env.target.name, holder)

    def check_health(self) -> list[str]:
        """Instances that died (a ``crash`` failure), and routed groups with no ready instance."""
        problems = []
        for group in self.groups():
            for instance in group.instances:
                if not instance.alive:
                    problems.append(f"instance {instance.id} ({instance.version}) died")
        return problems

    def close(self) -> None:
        """Nothing to release."""


class SimRouter:
    """The simulated router: weights per group, in the cell's state file."""

    def __init__(self, platform: SimPlatform) -> None:
        self._platform = platform

    @property
    def url(self) -> str:
        """``sim://`` and the target's name."""
        return f"sim://{self._platform.env.target.name}"

    @property
    def weight_semantics(self) -> str:
        """``per-instance``: every ready simulated instance of a group gets the group's weight."""
        return WEIGHTS_PER_INSTANCE

    def weights(self) -> dict[str, int]:
        """The weight of every group the router knows."""
        return dict(self._platform.state["weights"])

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Route by ``weights`` (groups left out get 0)."""
        with self._platform._lock:
            self._platform.state["weights"] = {name: int(w) for name, w in weights.items() if w > 0}
            self._platform.save()

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        """Whether the router routes by ``weights``."""
        return self.weights() == {name: int(w) for name, w in weights.items() if w > 0}

    def set_preview(self, group: str | None) -> str | None:
        """Record the preview group; its URL is the router's with the group."""
        with self._platform._lock:
            self._platform.state["preview"] = group
            self._platform.save()
        return None if group is None else f"{self.url}/{group}"

    def set_affinity(self, enabled: bool, scope: str = "session") -> None:
        """Record affinity on or off (and its scope)."""
        with self._platform._lock:
            self._platform.state["affinity"] = enabled
            self._platform.state["affinity_scope"] = scope
            self._platform.save()

    def check_affinity(self) -> None:
        """Sticky sessions always work here."""

    def remove_managed_routes(self) -> None:
        """Forget the preview and affinity."""
        with self._platform._lock:
            state = self._platform.state
            if state["preview"] is not None or state["affinity"]:
                state["preview"], state["affinity"] = None, False
                self._platform.save()


def simulated_work(state_dir: Path) -> float:
    """Real seconds a cell's platform spent waiting on its simulated instances (for benchmarks)."""
    try:
        return float(json.loads((state_dir / "sim.json").read_text(encoding="utf-8"))["work_seconds"])
    except (FileNotFoundError, KeyError, ValueError):
        return 0.0
