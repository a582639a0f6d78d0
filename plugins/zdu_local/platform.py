"""The local platform: instances of the application as processes on this machine, behind a real nginx.

It is the embedded default :class:`zdu.platform.Platform`. ``zdu local up`` starts a fleet (nginx and
``replicas`` instances of one version) that outlives the command; every later command builds a new
:class:`LocalPlatform` on the same state directory and adopts the fleet from ``state.json``;
``zdu local down`` stops it. Instances are started detached (their own session, output to
``logs/<instance>.log`` in the state directory), on free ports, and join the router only once their
readiness check answers 200. They leave it by draining: out of the router (a confirmed graceful
reload), their requests in flight finished (bounded by ``drain_timeout``; asked of the instance's
``inflight_path``, so websockets do not hold it, else its established connections counted), then
SIGTERM (the application closes its websockets) and, after ``stop_grace``, SIGKILL. ``drain = false``
reverses the order for negative controls: SIGTERM while still routed, out of the router afterwards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import attrs

from zdu.plugins import (
    Instance,
    InstanceGroup,
    PlatformEnv,
    PlatformError,
    ProcessIdentity,
    ReadinessTimeout,
    Version,
    established_connections,
    file_lock,
    free_port,
    http_status,
    inflight_requests,
    routed_versions,
    spawn,
    stop_processes,
    tail,
)
from zdu_local.assets import DirectoryAssetStore
from zdu_local.config import LocalPlatformConfig
from zdu_local.nginx import Nginx
from zdu_local.router import NginxRouter
from zdu_local.state import FleetState, InstanceRecord, StateStore

__all__ = ["DEFAULT_WEIGHT", "LocalPlatform"]

logger = logging.getLogger("zdu.local")

# The weight `up` gives the first group: strategies may think of weights as percentages.
DEFAULT_WEIGHT = 100
_POLL = 0.05
# How long a starting instance's readiness check rests between two answers (one request at a time):
# an instance joins the router within a few milliseconds of turning ready, not a poll interval later.
_READY_POLL = 0.005
# How often a draining instance's requests in flight are asked for (the same reasoning).
_INFLIGHT_POLL = 0.005
# How long a draining instance must count nothing in flight before it is stopped.
_QUIET = 0.05
_GROUP_NAME_LIMIT = 63
_GROUP_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


def _identity(record: InstanceRecord) -> ProcessIdentity:
    return ProcessIdentity(record.pid, record.started_at)


class LocalPlatform:
    """The :class:`zdu.platform.Platform` of processes behind nginx, kept in ``env.state_dir``.

    Constructing one starts nothing: it adopts whatever fleet ``state.json`` describes. Use :meth:`up`
    to start a fleet, :meth:`down` to stop it. Every change holds the fleet's lock (``state.lock``)
    against other threads and processes.

    :param config: how to run instances and nginx.
    :param env: the target, and the state directory of its fleet.
    """

    def __init__(self, config: LocalPlatformConfig, env: PlatformEnv) -> None:
        self.config = config
        self.env = env
        self.state_dir = env.state_dir.resolve()
        self._store = StateStore(self.state_dir / "state.json")
        self._assets: DirectoryAssetStore | None = None
        self._died: list[str] = []
        self._reported: set[str] = set()  # instances whose death a health check reported
        # instances this object is starting or stopping now: any other instance found starting (not
        # routable) or leaving was left so by an interrupted command, and a scale finishes its work
        self._busy: set[str] = set()
        if config.assets_command:
            self._assets = DirectoryAssetStore(
                self.state_dir / "assets", config.assets_command_for, {**os.environ, **config.env}
            )
        self._router = NginxRouter(
            self._store,
            Nginx(config.nginx, self.state_dir / "nginx"),
            self.config.listen,
            assets_dir=self._assets.files_dir if self._assets is not None else None,
            affinity_grace=config.affinity_grace,
            retry=config.retry,
            settle=self._wait_drained,
        )

    # -- the fleet's life ----------------------------------------------------------------------------

    @property
    def router(self) -> NginxRouter:
        """The nginx router in front of the instances."""
        return self._router

    @property
    def assets(self) -> DirectoryAssetStore | None:
        """The assets store (``<state dir>/assets``), or None when ``assets_command`` is empty."""
        return self._assets

    @contextlib.contextmanager
    def hold_lock(self, holder: str) -> Iterator[None]:
        """Hold ``<state dir>/upgrade.lock`` (flock) for an upgrade; TargetBusy names the holder.

        Once held, :meth:`reconcile` finishes whatever a command killed while it held the lock left.
        """
        with file_lock(self.state_dir / "upgrade.lock", self.env.target.name, holder):
            self.reconcile()
            yield

    def reconcile(self) -> None:
        """Finish the changes an interrupted command (a ``zdu`` killed mid-step) left half done.

        The state records each change's intent before it is made: instances it was stopping
        (``leaving``) are drained and stopped, now, and their absence is progress, not a fault;
        instances it was starting (not yet routable) join the router once ready (or are stopped if they
        do not become ready); dead instances are forgotten (one that was routed and not leaving is still
        reported by the next :meth:`check_health`); the routing the state describes is put in force.
        """
        with self._store.locked():
            state = self._store.state
            if state.router is None or not self._router.running():
                return
            for group in list(state.groups):
                self._forget_dead(group)
            free = [r for r in self._store.state.instances if r.id not in self._busy]
            stops = [r for r in free if r.leaving]
            starts = [r for r in free if not r.routable and not r.leaving]
            if stops:
                logger.info("finishing the stop of %s", sorted(r.id for r in stops))
                self._leave_router(stops)
            self._busy.update(r.id for r in starts)
        if stops:
            self._stop_drained(stops)
        for group in sorted({r.group for r in starts}):
            records = [r for r in starts if r.group == group]
            logger.info("waiting for %s to become ready", sorted(r.id for r in records))
            try:
                self._join_when_ready(group, Version.parse(records[0].version), records)
            except ReadinessTimeout as error:
                logger.warning("stopped instances an interrupted command started: %s", error)
        with self._store.locked():
            self._router.sync()

    @property
    def url(self) -> str:
        """Where nginx listens: the URL users and probes reach."""
        return self._router.url

    def serving_versions(self) -> list[Version]:
        """The versions of the groups nginx routes to with a ready instance."""
        return routed_versions(self)

    @property
    def state(self) -> FleetState:
        """What ``state.json`` says: instances with their pids and ports, groups, the router's record."""
        return self._store.state

    def is_up(self) -> bool:
        """Whether the fleet runs: nginx runs and at least one instance is alive."""
        return self._router.running() and any(_identity(r).alive() for r in self._store.state.instances)

    def up(self, version: Version) -> str:
        """Start nginx and ``replicas`` instances of ``version``, ready and routed; return the URL.

        Idempotent: when the fleet is up, returns its URL (whatever version it runs). When a start fails,
        whatever this call started is stopped again.
        """
        with self._store.locked():
            if self.is_up():
                logger.info("the local fleet is up at %s", self._router.url)
                return self._router.url
            started_router = not self._router.running()
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                self._router.start()
                group = self.group_name(version)
                weights = self._router.weights()
                if not any(weight > 0 for weight in weights.values()):
                    self._router.set_weights({group: DEFAULT_WEIGHT})
                self.scale(group, version, self.config.replicas)
            except BaseException:
                if started_router:
                    self.down()
                raise
            logger.info(
                "the local fleet is up at %s: %d instances of %s",
                self._router.url,
                self.config.replicas,
                version,
            )
            return self._router.url

    def down(self) -> None:
        """Stop every instance and nginx, and forget the fleet (logs stay in the state directory)."""
        with self._store.locked():
            instances = self._store.state.instances
            if instances:
                logger.info("stopping %d instances", len(instances))
            stop_processes([_identity(r) for r in instances], self.config.stop_grace)
            self._router.stop()
            self._store.forget()
            logger.info("the local fleet in %s is down", self.state_dir)

    def close(self) -> None:
        """Nothing to release: the fleet runs on without this object."""

    # -- groups --------------------------------------------------------------------------------------

    def group_name(self, version: Version) -> str:
        """``v`` and the version with dashes (``16.6.0`` is ``v16-6-0``), at most 63 characters."""
        canonical = str(attrs.evolve(version, text=""))
        name = "v" + re.sub(r"[^a-z0-9]+", "-", canonical.lower()).strip("-")
        if len(name) > _GROUP_NAME_LIMIT:
            digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
            name = name[: _GROUP_NAME_LIMIT - 9].rstrip("-") + "-" + digest
        return name

    def groups(self) -> list[InstanceGroup]:
        """Every group with its instances (readiness asked of each one now), oldest version first."""
        state = self._store.state
        routed = self._router.routed()
        groups = []
        for name, version in state.groups.items():
            instances = tuple(self._instance(record, routed) for record in self._records(name))
            groups.append(InstanceGroup(name=name, version=Version.parse(version), instances=instances))
        return sorted(groups, key=lambda group: (group.version, group.name))

    def scale(self, group: str, version: Version, replicas: int) -> InstanceGroup:
        """Make ``group`` have ``replicas`` running instances of ``version``; see the Platform protocol.

        Instances found dead are forgotten first. New instances join the router once ready (when the
        group has a weight); those not ready within ``ready_timeout`` are stopped and
        :class:`~zdu.errors.ReadinessTimeout` is raised. Scaling down drains the newest instances.
        """
        return self.scale_groups([(group, version, replicas)])[0]

    def scale_groups(self, changes: Sequence[tuple[str, Version, int]]) -> list[InstanceGroup]:
        """Scale several groups at once: each ``(group, version, replicas)`` as :meth:`scale` would.

        In this order: the new instances are spawned; the leaving ones leave the router (one confirmed
        reload, while the new ones start); then the new ones' start-up and the leaving ones' drain go
        on side by side, and each new instance joins the router once ready. So a new instance is never
        routed before the instances it replaces left the router (the fleet routes no more instances
        than the changes allow), and no start waits for a reload or a drain. ``rolling`` replaces a
        batch this way. The fleet's lock is held while the state and the routing change, not while
        instances start or drain. Returns the groups in the order of ``changes``.

        Each group is reconciled first with what an interrupted command (a ``zdu`` killed mid-change)
        left: dead instances are forgotten; instances it was stopping (``leaving``) are drained and
        stopped, and do not count; instances it was starting count, and join the router once ready,
        like the new ones.
        """
        for group, _version, replicas in changes:
            if not _GROUP_NAME.match(group):
                raise PlatformError(
                    f"group name {group!r} is not valid (lowercase letters, digits, '.', '_', '-'; at most "
                    "63 characters, starting and ending with a letter or digit)"
                )
            if replicas < 0:
                raise PlatformError(f"cannot scale {group} to {replicas} replicas")
        started: list[tuple[str, Version, list[InstanceRecord]]] = []
        leaving: list[InstanceRecord] = []
        with self._store.locked():
            if self._store.state.router is None:
                raise PlatformError(
                    f"the local fleet in {self.state_dir} is not up: run 'zdu local up' first"
                )
            try:
                for group, version, replicas in changes:
                    known = self._store.state.groups.get(group)
                    if known is not None and Version.parse(known) != version:
                        raise PlatformError(f"group {group} runs version {known}, not {version}")
                    if known is None:
                        self._store.update(groups={**self._store.state.groups, group: str(version)})
                    self._forget_dead(group)
                    interrupted_stops = [
                        r for r in self._records(group) if r.leaving and r.id not in self._busy
                    ]
                    if interrupted_stops:
                        logger.info(
                            "finishing the stop of %s (an interrupted command was stopping them)",
                            sorted(r.id for r in interrupted_stops),
                        )
                    leaving.extend(interrupted_stops)
                    running = [r for r in self._records(group) if not r.leaving]
                    adopted = [r for r in running if not r.routable and r.id not in self._busy]
                    if len(running) > replicas:  # the unready first, then the newest
                        ordered = sorted(running, key=lambda r: (r.routable, -r.serial))
                        excess = ordered[: len(running) - replicas]
                        leaving.extend(excess)
                        adopted = [r for r in adopted if r not in excess]
                    spawned = []
                    if len(running) < replicas:
                        spawned = self._spawn_all(group, version, replicas - len(running))
                    if adopted:
                        logger.info(
                            "waiting for %s to become ready (an interrupted command started them)",
                            sorted(r.id for r in adopted),
                        )
                        self._busy.update(r.id for r in adopted)
                    if adopted or spawned:
                        started.append((group, version, [*adopted, *spawned]))
            except BaseException:
                for group, _version, records in started:
                    self._abandon(group, records)
                raise
            if leaving and not self.config.drain:
                self._drain_and_stop(leaving)
                leaving = []
            elif leaving:
                self._leave_router(leaving)
            elif not started and self._router.running():
                # nothing changes: still put the routing of the fleet as it is in force, in case an
                # interrupted command marked an instance ready and did not reach the reload
                self._router.sync()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zdu-drain") as pool:
            stopping = pool.submit(self._stop_drained, leaving) if leaving else None
            try:
                for group, version, records in started:
                    self._join_when_ready(group, version, records)
            finally:
                if stopping is not None:
                    stopping.result()
        with self._store.locked():
            return [self._group(group) for group, _version, _replicas in changes]

    def remove_group(self, group: str) -> None:
        """Drain and stop every instance of ``group``, and forget the group and its weight."""
        with self._store.locked():
            if group not in self._store.state.groups:
                return
            self._drain_and_stop(self._records(group))
            groups = {name: v for name, v in self._store.state.groups.items() if name != group}
            self._store.update(groups=groups)
            record = self._store.state.router
            if record is not None:
                if record.preview_group == group:
                    self._router.set_preview(None)
                weights = {name: w for name, w in self._router.record.weights.items() if name != group}
                self._router.set_weights(weights)
            logger.info("group %s removed", group)

    def check_health(self) -> list[str]:
        """Instances that died or stopped answering their readiness check, and a stopped nginx.

        A routed instance found dead and forgotten by a ``scale`` since the last check is reported too;
        one that died out of the router (drained, or not ready yet) is not a problem.
        """
        problems, self._died = list(self._died), []
        if self._store.state.router is not None and not self._router.running():
            problems.append(f"the router (nginx, prefix {self.state_dir / 'nginx'}) is not running")
        for record in self._store.state.instances:
            if record.leaving:
                # the platform was stopping it (perhaps a command killed while it drained): gone or
                # not, that is progress, not a fault; the next scale finishes the stop
                continue
            if not _identity(record).alive():
                if not record.routable:
                    # it had not joined the router yet: no user reaches it, and the next scale forgets it
                    continue
                self._reported.add(record.id)
                problems.append(
                    f"instance {record.id} ({record.version}, {record.address}) is not running: "
                    f"process {record.pid} exited"
                )
            elif record.routable:
                status = http_status(record.host, record.port, self.config.readiness_path)
                if status != 200:
                    answer = "no answer" if status is None else f"status {status}"
                    problems.append(
                        f"instance {record.id} ({record.version}, {record.address}) stopped being ready: "
                        f"{self.config.readiness_path} gave {answer}"
                    )
        return problems

    # -- the work ------------------------------------------------------------------------------------

    def _records(self, group: str) -> list[InstanceRecord]:
        return [r for r in self._store.state.instances if r.group == group]

    def _current(self, ids: set[str]) -> list[InstanceRecord]:
        """The records of ``ids`` as the state has them now."""
        return [r for r in self._store.state.instances if r.id in ids]

    def _group(self, group: str) -> InstanceGroup:
        routed = self._router.routed()
        return InstanceGroup(
            name=group,
            version=Version.parse(self._store.state.groups[group]),
            instances=tuple(self._instance(r, routed) for r in self._records(group)),
        )

    def _instance(self, record: InstanceRecord, routed: frozenset[str]) -> Instance:
        alive = _identity(record).alive()
        # an instance being stopped is never ready again, whatever it answers: it takes no traffic
        ready = (
            alive
            and not record.leaving
            and http_status(record.host, record.port, self.config.readiness_path) == 200
        )
        return Instance(
            id=record.id,
            group=record.group,
            version=record.version,
            address=record.address,
            ready=ready,
            alive=alive,
            routed=record.id in routed,
        )

    def _replace_records(self, records: Iterable[InstanceRecord], *, remove: bool = False) -> None:
        changed = {r.id: r for r in records}
        instances = tuple(
            changed.get(r.id, r) for r in self._store.state.instances if not (remove and r.id in changed)
        )
        self._store.update(instances=instances)

    def _forget_dead(self, group: str) -> None:
        dead = [r for r in self._records(group) if not _identity(r).alive()]
        if not dead:
            return
        for record in dead:
            logger.warning("instance %s (pid %d) is dead: forgetting it", record.id, record.pid)
            if record.routable and not record.leaving and record.id not in self._reported:
                # the next health check says so
                self._died.append(
                    f"instance {record.id} ({record.version}, {record.address}) died while serving "
                    f"(process {record.pid} exited) and was forgotten"
                )
        self._replace_records(dead, remove=True)
        if self._store.state.router is not None and self._router.running():
            self._router.sync()

    def _spawn(self, group: str, version: Version) -> InstanceRecord:
        state = self._store.state
        serial = state.next_serial
        instance_id = f"{group}-{serial}"
        port = free_port(self.config.host)
        log = self.state_dir / "logs" / f"{instance_id}.log"
        command = self.config.command_for(str(version), port)
        try:
            process = spawn(command, {**os.environ, **self.config.env}, log)
        except OSError as error:
            raise PlatformError(f"cannot start an instance of {version}: {command[0]}: {error}") from error
        record = InstanceRecord(
            id=instance_id,
            group=group,
            version=str(version),
            host=self.config.host,
            port=port,
            pid=process.pid,
            started_at=process.started_at,
            serial=serial,
            log=str(log),
        )
        self._store.update(instances=(*state.instances, record), next_serial=serial + 1)
        logger.info(
            "started instance %s of %s on %s (pid %d)", instance_id, version, record.address, record.pid
        )
        return record

    def _spawn_all(self, group: str, version: Version, count: int) -> list[InstanceRecord]:
        """Spawn ``count`` instances (under the fleet's lock); on a failure, stop those spawned."""
        started: list[InstanceRecord] = []
        try:
            for _ in range(count):
                record = self._spawn(group, version)
                self._busy.add(record.id)
                started.append(record)
        except BaseException:
            self._abandon(group, started)
            self._busy.difference_update(r.id for r in started)
            raise
        return started

    def _join_when_ready(self, group: str, version: Version, started: Sequence[InstanceRecord]) -> None:
        """Wait (without the fleet's lock) until ``started`` are ready, then route them."""
        try:
            try:
                self._wait_ready(started, version)
            except BaseException:
                self._abandon(group, started)
                raise
            with self._store.locked():
                if self._store.state.router is not None:
                    self._router.sync()
        finally:
            self._busy.difference_update(r.id for r in started)

    def _abandon(self, group: str, started: Sequence[InstanceRecord]) -> None:
        """Stop the instances of ``started`` that did not become ready; forget an empty group."""
        with self._store.locked():
            unready = [r for r in self._records(group) if r.id in {s.id for s in started} and not r.routable]
            if unready:
                logger.warning("stopping instances that did not become ready: %s", [r.id for r in unready])
                stop_processes([_identity(r) for r in unready], self.config.stop_grace)
                self._replace_records(unready, remove=True)
            if not self._records(group):
                self._store.update(groups={n: v for n, v in self._store.state.groups.items() if n != group})
            if any(r.routable for r in self._records(group)) and self._router.running():
                self._router.sync()

    def _wait_ready(self, records: Sequence[InstanceRecord], version: Version) -> None:
        """Mark ``records`` routable as each one turns ready; raise ReadinessTimeout when one does not."""
        pending = {r.id: r for r in records}
        last: dict[str, int | None] = {}
        deadline = time.monotonic() + self.config.ready_timeout
        while pending:
            for record in list(pending.values()):
                if not _identity(record).alive():
                    raise ReadinessTimeout(
                        f"instance {record.id} of version {version} exited before it became ready; "
                        f"last lines of {record.log}:\n{_indent(tail(Path(record.log)))}"
                    )
                status = http_status(record.host, record.port, self.config.readiness_path)
                last[record.id] = status
                if status == 200:
                    logger.info("instance %s of %s is ready", record.id, version)
                    with self._store.locked():
                        self._replace_records([attrs.evolve(record, routable=True)])
                    del pending[record.id]
            if pending and time.monotonic() > deadline:
                record = next(iter(pending.values()))
                answer = "no answer" if last.get(record.id) is None else f"status {last[record.id]}"
                raise ReadinessTimeout(
                    f"instance {record.id} of version {version} did not become ready within "
                    f"{self.config.ready_timeout:g}s (http://{record.address}{self.config.readiness_path} "
                    f"gave {answer}); last lines of {record.log}:\n{_indent(tail(Path(record.log)))}"
                )
            if pending:
                time.sleep(_READY_POLL)

    def _drain_and_stop(self, records: Sequence[InstanceRecord]) -> None:
        """Take ``records`` out of the router, wait for their requests in flight to finish, stop them.

        With ``drain`` off (a negative control), they are stopped first and leave the router after.
        """
        if not records:
            return
        ids = {r.id for r in records}
        if not self.config.drain:
            logger.warning("stopping instances %s while the router still routes to them", sorted(ids))
            with self._store.locked():  # the intent first: its death is no fault
                self._replace_records([attrs.evolve(r, leaving=True) for r in self._current(ids)])
            stop_processes([_identity(r) for r in records], self.config.stop_grace)
            try:
                self._leave_router(records)
                with self._store.locked():
                    self._replace_records(self._current(ids), remove=True)
            finally:
                self._busy.difference_update(ids)
            return
        self._leave_router(records)
        self._stop_drained(records)

    def _leave_router(self, records: Sequence[InstanceRecord]) -> None:
        """Take ``records`` out of the router (a confirmed reload), under the fleet's lock.

        Records the intent first: they are ``leaving``, so that a command interrupted from here on
        leaves them to be stopped by the next scale, and their death is no fault.
        """
        with self._store.locked():
            self._busy.update(r.id for r in records)
            ids = {r.id for r in records}
            self._replace_records([attrs.evolve(r, routable=False, leaving=True) for r in self._current(ids)])
            if self._store.state.router is not None and self._router.running():
                self._router.sync()

    def _stop_drained(self, records: Sequence[InstanceRecord]) -> None:
        """Wait for ``records``' requests in flight, stop them (without the lock), then forget them."""
        ids = {r.id for r in records}
        try:
            self._wait_drained([r for r in records if _identity(r).alive()])
            logger.info("stopping instances %s", sorted(ids))
            stop_processes([_identity(r) for r in records], self.config.stop_grace)
            with self._store.locked():
                self._replace_records(self._current(ids), remove=True)
        finally:
            self._busy.difference_update(ids)

    def _wait_drained(self, records: Sequence[InstanceRecord]) -> None:
        """Wait, bounded by ``drain_timeout``, until ``records`` (out of the router) have nothing in flight.

        An instance that answers ``inflight_path`` is done once it counts no request for 50 ms in a row
        (websockets do not count: its SIGTERM closes them); for any other, its established TCP
        connections are counted.
        """
        path = self.config.inflight_path
        deadline = time.monotonic() + self.config.drain_timeout
        pending = {r.id: r for r in records}
        busy: dict[str, str] = {}
        idle_since: dict[str, float] = {}
        while pending:
            busy = {}
            counted = []  # instances without an answer at inflight_path: their connections are counted
            for record in pending.values():
                requests = inflight_requests(record.host, record.port, path) if path else None
                if requests is None:
                    counted.append(record)
                elif requests > 0:
                    busy[record.id] = f"{requests} requests"
            if counted:  # the machine's whole TCP table: only when an instance cannot count for itself
                connections = established_connections({r.port for r in counted})
                busy.update(
                    {r.id: f"{connections[r.port]} connections" for r in counted if connections[r.port]}
                )
            now = time.monotonic()
            for key in pending:
                if key in busy:
                    idle_since.pop(key, None)
                else:
                    idle_since.setdefault(key, now)
            # idle for _QUIET in a row: a request nginx's previous workers accepted just before the
            # routing changed may still be on its way to the instance when it first counts none
            pending = {key: r for key, r in pending.items() if key in busy or now - idle_since[key] < _QUIET}
            if not pending or now >= deadline:
                break
            time.sleep(_POLL if counted else _INFLIGHT_POLL)
        if busy:
            logger.warning(
                "still in flight after a %gs drain, stopping anyway: %s", self.config.drain_timeout, busy
            )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (empty)"
