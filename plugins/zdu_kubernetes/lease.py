"""The target's upgrade lock: a ``coordination.k8s.io/v1`` Lease, held and renewed for an upgrade's length."""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections.abc import Iterator

from zdu.plugins import PlatformError, TargetBusy
from zdu_kubernetes.api import Api, Obj
from zdu_kubernetes.objects import MANAGED_BY

__all__ = ["LeaseLock", "lease_object", "micro_time"]

log = logging.getLogger("zdu.kubernetes.lease")


def micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with six fractional digits, in UTC."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


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


class LeaseLock:
    """Holds Lease ``name`` for ``holder``; another holder's unexpired Lease raises TargetBusy.

    A Lease whose holder stopped renewing it for ``duration`` seconds is taken over. While held, a
    thread renews it every third of ``duration``; leaving deletes it.
    """

    def __init__(self, api: Api, name: str, target: str, duration: int) -> None:
        self.api = api
        self.name = name
        self.target = target
        self.duration = duration
        self.lost: str | None = None

    def _expired(self, lease: Obj) -> bool:
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return True
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        if renewed is None:
            return True
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        return datetime.datetime.now(datetime.UTC) > renewed + datetime.timedelta(seconds=duration)

    def acquire(self, holder: str) -> None:
        """Take the Lease or raise :class:`TargetBusy` naming its holder."""
        created = self.api.create(lease_object(self.name, self.api.namespace, holder, self.duration))
        if created["spec"].get("holderIdentity") == holder:
            return
        busy: list[str] = []

        def take(lease: Obj) -> bool:
            spec = lease.setdefault("spec", {})
            current = spec.get("holderIdentity")
            if current == holder:
                return False
            if not self._expired(lease):
                busy.append(str(current))
                return False
            fresh = lease_object(self.name, self.api.namespace, holder, self.duration)["spec"]
            fresh["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            lease["spec"] = fresh
            return True

        self.api.update("Lease", self.name, take)
        if busy:
            raise TargetBusy(
                f"target {self.target!r} is being upgraded by {busy[-1]} "
                f"(Lease {self.api.namespace}/{self.name})"
            )

    def renew(self, holder: str) -> None:
        """Move the Lease's renewTime to now; note the loss when another holder has it."""

        def touch(lease: Obj) -> bool:
            spec = lease.setdefault("spec", {})
            if spec.get("holderIdentity") != holder:
                self.lost = str(spec.get("holderIdentity"))
                return False
            spec["renewTime"] = micro_time(datetime.datetime.now(datetime.UTC))
            return True

        self.api.update("Lease", self.name, touch)

    def release(self, holder: str) -> None:
        """Delete the Lease when ``holder`` still holds it."""
        lease = self.api.get("Lease", self.name)
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == holder:
            self.api.delete("Lease", self.name)

    @contextlib.contextmanager
    def held(self, holder: str) -> Iterator[None]:
        """Hold the Lease for the block, renewing it in a thread."""
        self.acquire(holder)
        stop = threading.Event()

        def renew_loop() -> None:
            while not stop.wait(max(1.0, self.duration / 3)):
                try:
                    self.renew(holder)
                except PlatformError as error:
                    log.warning("could not renew Lease %s: %s", self.name, error)

        thread = threading.Thread(target=renew_loop, name=f"lease {self.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)
            self.release(holder)
