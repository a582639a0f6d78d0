"""The Lease lock: expiry by what this machine observed, loss that pauses the upgrade, a careful release.

The stand-in's clock is the test's: a holder whose clock is far behind writes a ``renewTime`` years in
the past, and keeps renewing it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdu.errors import TargetBusy
from zdu.model import Target, UpgradeStatus, Version
from zdu.platform import PlatformEnv
from zdu_kubernetes.config import KubernetesPlatformConfig
from zdu_kubernetes.platform import KubernetesPlatform

from .conftest import FROM, TO, platform_options, upgrade_for
from .stand_in_apiserver import StandInApiServer

LEASE = "zdu-cell"
DURATION = 3  # seconds: the smallest lease_duration zdu accepts, so the tests wait little


def _platform(server: StandInApiServer, state: Path, **options: Any) -> KubernetesPlatform:
    config = KubernetesPlatformConfig(**platform_options(server, lease_duration=DURATION, **options))
    env = PlatformEnv(target=Target("cell", "kubernetes", FROM), state_dir=state, release=Version.parse(TO))
    return KubernetesPlatform(config, env)


def _lease(holder: str, renewed: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": "gitlab"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": DURATION, "renewTime": renewed},
    }


@pytest.fixture
def skewed_holder(apiserver: StandInApiServer) -> Iterator[threading.Event]:
    """ "pipeline one" holds the Lease and renews it twice a second, its clock six years behind."""
    stop = threading.Event()
    apiserver.put(_lease("pipeline one", "2020-01-01T00:00:00.000000Z"))

    def renew() -> None:
        tick = 0
        while not stop.wait(0.5):
            tick += 1
            lease = apiserver.get("Lease", LEASE)
            assert lease is not None
            lease["spec"]["renewTime"] = f"2020-01-01T00:{tick // 60:02d}:{tick % 60:02d}.000000Z"
            apiserver.put(lease)

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join()


def test_a_lease_renewed_by_a_skewed_clock_stays_busy_then_expires_once_unchanged(
    apiserver: StandInApiServer, skewed_holder: threading.Event, tmp_path: Path
) -> None:
    platform = _platform(apiserver, tmp_path)
    # its renewTime is years old by our clock, but it is being renewed: busy, now and after its duration
    with (
        pytest.raises(TargetBusy, match=r"pipeline one .*seen unchanged for 0s of its 3s"),
        platform.hold_lock("two"),
    ):
        pass
    time.sleep(DURATION + 0.5)
    with pytest.raises(TargetBusy, match="pipeline one"), platform.hold_lock("two"):
        pass
    # its holder stops renewing: busy until this machine has seen it unchanged for its duration
    skewed_holder.set()
    time.sleep(0.6)
    with pytest.raises(TargetBusy, match="pipeline one"), platform.hold_lock("two"):
        pass
    platform.close()
    time.sleep(DURATION + 0.2)
    # a later attempt from another process of this machine (a new platform, the same state directory)
    later = _platform(apiserver, tmp_path)
    with later.hold_lock("pipeline two"):
        lease = apiserver.get("Lease", LEASE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "pipeline two" and lease["spec"]["leaseTransitions"] == 1
    later.close()
    assert apiserver.get("Lease", LEASE) is None  # released


def test_a_lost_lease_pauses_the_upgrade_at_its_next_safe_point(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    upgrade = upgrade_for(apiserver, tmp_path, platform={"lease_duration": DURATION})
    original = upgrade.platform.scale
    taken = threading.Event()

    def scale(group: str, version: object, replicas: int) -> object:
        if not taken.is_set():
            taken.set()
            lease = apiserver.get("Lease", LEASE)
            assert lease is not None and lease["spec"]["holderIdentity"] != "pipeline two"
            lease["spec"]["holderIdentity"] = "pipeline two"  # taken over by another upgrade
            apiserver.put(lease)
            time.sleep(DURATION / 3 + 0.8)  # one renewal finds it
        return original(group, version, replicas)  # type: ignore[arg-type]

    upgrade.platform.scale = scale  # type: ignore[method-assign]
    report = upgrade.run()
    upgrade.close()
    assert taken.is_set()
    assert report.status is UpgradeStatus.PAUSED, (report.status, report.error)
    assert "lock being lost" in (report.error or "") and "held by pipeline two" in (report.error or "")
    paused = [e for e in upgrade.journal.events(report.upgrade_id) if e.kind == "paused"]
    assert paused and "pipeline two" in paused[0].message
    # the Lease is the new holder's: leaving did not delete it
    lease = apiserver.get("Lease", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == "pipeline two"


def test_renewals_failing_longer_than_the_duration_lose_the_lock(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    platform = _platform(apiserver, tmp_path, request_attempts=1)
    reasons: list[str] = []
    lost = threading.Event()
    with platform.hold_lock("pipeline one"):
        platform.on_lock_lost(lambda reason: (reasons.append(reason), lost.set()))
        apiserver.inject("PUT", "leases", 503, times=1000)
        assert lost.wait(DURATION + 5)
        apiserver.faults.clear()
    platform.close()
    assert len(reasons) == 1 and "could not be renewed" in reasons[0] and "503" in reasons[0]


def test_a_lease_taken_over_while_it_is_left_is_not_deleted(
    apiserver: StandInApiServer, tmp_path: Path
) -> None:
    platform = _platform(apiserver, tmp_path)
    read = platform.api.get
    armed = threading.Event()

    def get(kind: str, name: str) -> dict[str, Any] | None:
        found = read(kind, name)
        if kind == "Lease" and armed.is_set():
            armed.clear()
            # between the release's read and its delete, another upgrade takes the Lease over
            other = apiserver.get("Lease", LEASE)
            assert other is not None
            other["spec"]["holderIdentity"] = "pipeline two"
            apiserver.put(other)
        return found

    platform.api.get = get  # type: ignore[method-assign]
    with platform.hold_lock("pipeline one"):
        armed.set()
    platform.close()
    lease = apiserver.get("Lease", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == "pipeline two"
    deletes = [w for w in apiserver.writes if w[0] == "DELETE" and w[1] == "Lease"]
    assert deletes == [("DELETE", "Lease", LEASE, False)]  # asked, refused by its precondition
