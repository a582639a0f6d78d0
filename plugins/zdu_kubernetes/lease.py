"""The target's upgrade lock: a ``coordination.k8s.io/v1`` Lease, held and renewed for an upgrade's length.

As client-go's leader election does, expiry is judged by what this process observed, never by
comparing the Lease's ``renewTime`` (written by another machine's clock) with the local clock: a
Lease held by someone else is taken over only once it has stayed unchanged (same holder, renewTime
and resourceVersion) for its ``leaseDurationSeconds`` of local monotonic time since this process
first saw it so. A first attempt against another holder's Lease is therefore always busy; the time
it was first seen is kept in the target's state directory, so that a later attempt, from another
process on the same machine, can take it over.

While held, a thread renews it every third of the duration. When a renewal finds another holder (or
the Lease gone), or renewals keep failing for longer than the duration, the lock is lost: the
``on_lost`` callback is called once, and the orchestrator pauses the upgrade at its next safe point.
Leaving deletes the Lease only in the state this holder last read it (``preconditions`` on the
resourceVersion and uid), so a Lease taken over meanwhile is left to its new holder.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from zdu.plugins import PlatformError, TargetBusy, replace_atomically
from zdu_kubernetes.api import Api, Obj
from zdu_kubernetes.objects import MANAGED_BY

__all__ = ["LeaseLock", "lease_object", "micro_time"]

log = logging.getLogger("zdu.kubernetes.lease")

#: what identifies one state of a Lease: holder, renewTime, resourceVersion
Record = tuple[str, str, str]


def micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with six fractional digits, in UTC."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_object(name: str, namespace: str, holder: str, duration: int, transitions: int = 0) -> Obj:
    """A Lease held by ``holder`` from now."""
    now = micro_time(datetime.datetime.now(datetime.UTC))
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        },
    }


def _record(lease: Obj) -> Record:
    spec = lease.get("spec") or {}
    return (
        str(spec.get("holderIdentity") or ""),
        str(spec.get("renewTime") or spec.get("acquireTime") or ""),
        str((lease.get("metadata") or {}).get("resourceVersion") or ""),
    )


class LeaseLock:
    """Holds Lease ``name`` for a holder; another holder's Lease raises TargetBusy until it expires.

    :param api: the namespace's API.
    :param name: the Lease's name.
    :param target: the target's name, for messages.
    :param duration: ``leaseDurationSeconds`` of the Lease this process writes.
    :param on_lost: called once with the reason when the held lock is lost (from the renewing thread).
    :param observations: a file keeping when this machine first saw the Lease in its current state,
        for later attempts from other processes (None: kept in memory only).
    :param clock: the monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        api: Api,
        name: str,
        target: str,
        duration: int,
        *,
        on_lost: Callable[[str], None] | None = None,
        observations: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.name = name
        self.target = target
        self.duration = duration
        self.on_lost = on_lost
        self.observations = observations
        self.clock = clock
        self.lost: str | None = None
        self._guard = threading.Lock()
        self._observed: tuple[Record, float] | None = self._load()

    @property
    def where(self) -> str:
        """``namespace/name`` of the Lease."""
        return f"{self.api.namespace}/{self.name}"

    # -- what this process observed ----------------------------------------------------------------

    def _load(self) -> tuple[Record, float] | None:
        """The observation kept by an earlier process: its wall-clock moment turned into monotonic time."""
        if self.observations is None:
            return None
        try:
            data = json.loads(self.observations.read_text(encoding="utf-8"))
            holder, renewed, version = data["record"]
            seen_for = max(0.0, time.time() - float(data["observed_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if data.get("lease") != self.where:
            return None
        return (str(holder), str(renewed), str(version)), self.clock() - seen_for

    def _save(self, record: Record) -> None:
        if self.observations is None:
            return
        data = {"lease": self.where, "record": list(record), "observed_at": time.time()}
        try:
            self.observations.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(self.observations, json.dumps(data))
        except OSError as error:
            log.warning(
                "could not keep what was seen of Lease %s in %s: %s", self.where, self.observations, error
            )

    def unchanged_for(self, lease: Obj) -> float:
        """Seconds this machine has seen ``lease`` in its current state (0 the first time)."""
        record = _record(lease)
        now = self.clock()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
            self._save(record)
        return now - self._observed[1]

    def _expired(self, lease: Obj) -> tuple[bool, float, int]:
        """Whether another holder's ``lease`` may be taken over; how long seen unchanged; its duration."""
        spec = lease.get("spec") or {}
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        seen = self.unchanged_for(lease)
        if not spec.get("holderIdentity"):
            return True, seen, duration
        return seen >= duration, seen, duration

    # -- taking, renewing, leaving -------------------------------------------------------------------

    def acquire(self, holder: str) -> None:
        """Take the Lease or raise :class:`TargetBusy` naming its holder."""
        created = self.api.create(lease_object(self.name, self.api.namespace, holder, self.duration))
        if (created.get("spec") or {}).get("holderIdentity") == holder:
            return
        busy: list[str] = []

        def take(lease: Obj) -> bool:
            busy.clear()
            spec = lease.setdefault("spec", {})
            current = spec.get("holderIdentity")
            if current == holder:
                return False
            expired, seen, duration = self._expired(lease)
            if not expired:
                busy.append(
                    f"target {self.target!r} is being upgraded by {current} (Lease {self.where}, seen "
                    f"unchanged for {seen:.0f}s of its {duration}s from here; a holder that stopped "
                    f"renewing it is taken over once it has stayed unchanged {duration}s: try again then)"
                )
                return False
            fresh = lease_object(self.name, self.api.namespace, holder, self.duration)["spec"]
            fresh["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            lease["spec"] = fresh
            if current:
                log.warning(
                    "Lease %s: %s stopped renewing it for %.0fs: taken over", self.where, current, seen
                )
            return True

        self.api.update("Lease", self.name, take)
        if busy:
            raise TargetBusy(busy[-1])

    def _lose(self, reason: str) -> None:
        with self._guard:
            if self.lost is not None:
                return
            self.lost = reason
        log.warning("lost the upgrade lock: %s", reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def renew(self, holder: str) -> None:
        """Move the Lease's renewTime to now; the lock is lost when another holder has it, or it is gone."""

        def touch(lease: Obj) -> bool:
            spec = lease.setdefault("spec", {})
            current = spec.get("holderIdentity")
            if current != holder:
                self._lose(f"Lease {self.where} is now held by {current or 'nobody'}")
                return False
            spec["renewTime"] = micro_time(datetime.datetime.now(datetime.UTC))
            return True

        if self.api.update("Lease", self.name, touch) is None:
            self._lose(f"Lease {self.where} was deleted")

    def release(self, holder: str) -> None:
        """Delete the Lease when ``holder`` still holds it, and only in the state just read."""
        lease = self.api.get("Lease", self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != holder:
            return
        metadata = lease.get("metadata") or {}
        preconditions = {
            key: str(metadata[key]) for key in ("resourceVersion", "uid") if metadata.get(key) is not None
        }
        if not self.api.delete("Lease", self.name, preconditions):
            log.warning(
                "Lease %s changed while it was being left (taken over?): left to its holder", self.where
            )

    @contextlib.contextmanager
    def held(self, holder: str) -> Iterator[None]:
        """Hold the Lease for the block, renewing it in a thread; a loss calls ``on_lost`` once."""
        self.acquire(holder)
        self.lost = None
        stop = threading.Event()

        def renew_loop() -> None:
            renewed = self.clock()
            while not stop.wait(max(1.0, self.duration / 3)):
                try:
                    self.renew(holder)
                    renewed = self.clock()
                except PlatformError as error:
                    failing = self.clock() - renewed
                    log.warning("could not renew Lease %s (for %.0fs): %s", self.where, failing, error)
                    if failing > self.duration:
                        self._lose(
                            f"Lease {self.where} could not be renewed for {failing:.0f}s, longer than its "
                            f"{self.duration}s: another upgrade may have taken it ({error})"
                        )
                if self.lost is not None:
                    return

        thread = threading.Thread(target=renew_loop, name=f"lease {self.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)
            self.release(holder)
