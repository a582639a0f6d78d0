"""What the local platform remembers between commands: ``state.json`` in the target's state directory.

Every ``zdu`` command is a new Python process: ``zdu local up`` starts the fleet and exits, a later
``zdu upgrade`` adopts it, ``zdu local down`` stops it. They meet in this file, written atomically
(a temporary file renamed over the old one) after every change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import cattrs

from zdu.plugins import PlatformError, format_address, replace_atomically

__all__ = ["FleetState", "InstanceRecord", "RouterRecord", "StateStore"]


@attrs.frozen
class InstanceRecord:
    """One instance the platform started.

    :ivar id: ``<group>-<serial>``, unique for the life of the state directory.
    :ivar serial: a counter that orders instances by start (newest is highest).
    :ivar pid: its process id, with ``started_at`` (the process's start time) to tell it from a later
        process that got the same pid.
    :ivar routable: it passed its readiness check and is not being drained: the router may send it
        traffic when its group has a weight.
    :ivar leaving: the platform decided to stop it (recorded before it leaves the router, is drained
        and stopped): it never takes traffic again, and once it is gone that is progress, not a fault.
        A command interrupted while stopping it leaves it so; the next scale finishes the stop.
    """

    id: str
    group: str
    version: str
    host: str
    port: int
    pid: int
    started_at: float
    serial: int
    log: str
    routable: bool = False
    leaving: bool = False

    @property
    def address(self) -> str:
        """``host:port``, as nginx's ``server`` directive wants it."""
        return format_address(self.host, self.port)


@attrs.frozen
class RouterRecord:
    """The nginx router: where it listens and what configuration it last put in force.

    :ivar listen: the user-facing ``host:port``.
    :ivar control_port: a loopback port on which nginx answers what routing it runs.
    :ivar generation: the number of the configuration last put in force.
    :ivar weights: group weights of that configuration.
    :ivar routed: ids of the instances that configuration sends user traffic to.
    :ivar preview_group: the group reachable on ``preview_port``, if any.
    :ivar affinity: sticky sessions are on: nginx pins each client to the group that served it (a
        ``zdu_group`` cookie) and routes by that cookie (see :meth:`NginxRouter.set_affinity`).
    :ivar affinity_scope: what affinity pins: ``session`` (every request of a client) or ``assets``
        (only the assets of the page that set the cookie).
    :ivar sticky: ids of the instances that configuration puts in the per-group upstreams (affinity).
    :ivar asset_grace: ids of instances that left the router but still serve their group's assets to
        the clients pinned to it, for a short grace, because their group has no other instance.
    :ivar joining: ids of ready instances put in their group's upstream (affinity) but not yet sent
        pages: the step between two reloads by which an instance joins while affinity is on.
    :ivar assets_dir: the directory ``/assets/`` is served from (the assets store), when routed there.
    :ivar canary_group: the group a share of user requests is split off to (``set_canary``), if any.
    :ivar canary_percent: that share, in percent of user requests (nginx's ``split_clients``).
    :ivar canary_cookie: ``name=value``: requests with this cookie always go to the canary.
    :ivar canary_header: ``Name: value``: requests with this header always go to the canary.
    """

    listen: str
    control_port: int
    master_pid: int | None = None
    master_started_at: float | None = None
    generation: int = 0
    weights: dict[str, int] = attrs.field(factory=dict)
    routed: tuple[str, ...] = ()
    preview_group: str | None = None
    preview_port: int | None = None
    affinity: bool = False
    affinity_scope: str = "session"
    sticky: tuple[str, ...] = ()
    asset_grace: tuple[str, ...] = ()
    joining: tuple[str, ...] = ()
    assets_dir: str | None = None
    canary_group: str | None = None
    canary_percent: int = 0
    canary_cookie: str | None = None
    canary_header: str | None = None


@attrs.frozen
class FleetState:
    """Everything in ``state.json``."""

    instances: tuple[InstanceRecord, ...] = ()
    groups: dict[str, str] = attrs.field(factory=dict)
    router: RouterRecord | None = None
    next_serial: int = 1


class StateStore:
    """The fleet's :class:`FleetState`: ``state.json``, and a lock for changing it.

    Reads see the file as last saved by anyone (another :class:`StateStore` in this process, another
    ``zdu`` command): the file is read again whenever it was replaced. Changes are made under
    :meth:`locked`, which excludes other processes and threads for the whole operation.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = FleetState()
        self._seen: tuple[int, int, int] | None = None
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_file: int | None = None

    @property
    def state(self) -> FleetState:
        """The state as last saved."""
        seen = self._stat()
        if seen != self._seen:
            self._state = self._load() if seen is not None else FleetState()
            self._seen = seen
        return self._state

    @contextlib.contextmanager
    def locked(self) -> Iterator[FleetState]:
        """Hold the fleet's lock (re-entrant in this store) and yield the current state."""
        with self._thread_lock:
            if self._depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(self.path.with_name("state.lock"), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX)
                except BaseException:
                    os.close(descriptor)
                    raise
                self._lock_file = descriptor
            self._depth += 1
            try:
                yield self.state
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_file is not None:
                    os.close(self._lock_file)  # releases the lock
                    self._lock_file = None

    def save(self, state: FleetState) -> None:
        """Replace the state, in memory and on disk (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(self.path, json.dumps(cattrs.unstructure(state), indent=2, sort_keys=True) + "\n")
        self._state = state
        self._seen = self._stat()

    def update(self, **changes: Any) -> FleetState:
        """Save the state with ``changes`` (as :func:`attrs.evolve` takes them); return it."""
        state = attrs.evolve(self.state, **changes)
        self.save(state)
        return state

    def forget(self) -> None:
        """Remove ``state.json``: the fleet is gone."""
        self.path.unlink(missing_ok=True)
        self._state = FleetState()
        self._seen = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return None
        return (status.st_ino, status.st_mtime_ns, status.st_size)

    def _load(self) -> FleetState:
        try:
            return cattrs.structure(json.loads(self.path.read_text(encoding="utf-8")), FleetState)
        except FileNotFoundError:
            return FleetState()
        except (ValueError, cattrs.BaseValidationError) as error:
            raise PlatformError(f"cannot read the local platform's state {self.path}: {error}") from error
