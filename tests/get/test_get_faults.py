"""HAProxy's runtime API goes away mid-upgrade: no Rails node is touched that cannot be drained first."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from tests.get.conftest import FROM, get_config, requires_haproxy, run_upgrade
from zdu.journal import Journal
from zdu.model import UpgradeStatus
from zdu_get.haproxy import HAProxyRuntime
from zdu_get.node import read_node

pytestmark = [pytest.mark.slow, requires_haproxy]


def test_without_the_runtime_api_no_rails_node_is_touched_and_haproxy_keeps_serving(make_fleet, tmp_path):
    fleet = make_fleet(components={"consul": ["consul-1"]}, rails=("rails-1", "rails-2"))
    pids = fleet.node_pids()
    state = tmp_path / "state"
    gone = fleet.socket.with_name(fleet.socket.name + ".gone")
    taken: list[str] = []

    def take_the_runtime_api_away() -> None:
        # once the backend components are being upgraded, before the first Rails node is drained
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (state / "journal.sqlite").exists():
                journal = Journal(state / "journal.sqlite")
                for record in journal.upgrades("get-e2e"):
                    if any(e.kind == "ansible" for e in journal.events(record.id)):
                        fleet.socket.rename(gone)  # HAProxy serves on; its runtime API is unreachable
                        taken.append(record.id)
                        return
            time.sleep(0.05)

    thief = threading.Thread(target=take_the_runtime_api_away)
    thief.start()
    try:
        report, journal = run_upgrade(get_config(fleet, state))
    finally:
        thief.join()
        if gone.exists():
            gone.rename(fleet.socket)
    assert taken, "the upgrade never reached the backend components"
    assert report.status in (UpgradeStatus.ROLLED_BACK, UpgradeStatus.INTERRUPTED), report.summary()
    assert f"HAProxy runtime API at {fleet.socket}" in (report.error or ""), report.error
    # no Rails node was upgraded or restarted: a node that cannot be drained is not touched
    steps = [e.message for e in journal.events(report.upgrade_id) if e.kind == "step-started"]
    assert not [s for s in steps if s.startswith("ansible gitlab_rails")], steps
    assert {n: fleet.node_pids()[n] for n in fleet.rails} == {n: pids[n] for n in fleet.rails}
    assert all(read_node(fleet.directory, n).version == FROM for n in fleet.rails)
    # and users lost nothing: the probe saw no failure, and HAProxy still routes to every Rails node
    assert report.value("failed_requests") == 0
    servers = {s.name: s for s in HAProxyRuntime(fleet.socket).servers("gitlab_rails")}
    assert all(servers[n].routed for n in fleet.rails), servers
    with urllib.request.urlopen(fleet.url + "/api/v4/version", timeout=5) as answer:
        assert answer.status == 200
