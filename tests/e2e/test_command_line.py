"""`zdu local up`, `zdu upgrade`, `zdu local down` from a shell, with curl in a loop as a user's tool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .conftest import FROM, TO, write_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")

CURL_LOOP = r"""
end=$((SECONDS + 90))
while [ -e "$1" ] && [ $SECONDS -lt $end ]; do
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 "$2/" || true
done
"""


def zdu(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZDU, *args], capture_output=True, text=True, timeout=180, env=env)


def fleet_pids(state_dir: Path) -> list[int]:
    state = json.loads((state_dir / "targets" / "e2e" / "state.json").read_text())
    pids = [instance["pid"] for instance in state["instances"]]
    nginx_pid = state_dir / "targets" / "e2e" / "nginx" / "logs" / "nginx.pid"
    if nginx_pid.exists():
        pids.append(int(nginx_pid.read_text().strip()))
    return pids


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (.ci/run installs it)")
@pytest.mark.parametrize("strategy", ["rolling", "blue-green"])
def test_up_upgrade_down_from_a_shell_with_curl_seeing_no_failure(tmp_path, strategy):
    options = {"scale_down_delay": 1.0, "preview_seconds": 1.0} if strategy == "blue-green" else {}
    config = write_config(tmp_path, strategy=strategy, options=options)
    up = zdu("local", "up", str(config))
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    pids = fleet_pids(tmp_path / "state")
    running = tmp_path / "curl-running"
    running.touch()
    curl = subprocess.Popen(
        ["bash", "-c", CURL_LOOP, "curl-loop", str(running), url], stdout=subprocess.PIPE, text=True
    )
    try:
        upgraded = zdu("upgrade", str(config), "--json")
    finally:
        running.unlink()
        codes = curl.communicate(timeout=30)[0].split()
        down = zdu("local", "down", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    report = json.loads(upgraded.stdout)  # stdout is only JSON
    assert report["status"] == "succeeded" and report["from_version"] == FROM and report["to_version"] == TO
    assert len(codes) > 50, "curl sent too few requests to show anything"
    assert set(codes) == {"200"}, f"curl saw {sorted(set(codes))}"
    assert down.returncode == 0, down.stderr
    # the journal in the config's state_dir holds the upgrade and its events
    status = json.loads(zdu("status", "--config", str(config), "--json").stdout)["upgrades"]
    assert [(u["id"], u["status"]) for u in status] == [(report["upgrade_id"], "succeeded")]
    events = json.loads(zdu("report", report["upgrade_id"], "--config", str(config), "--json").stdout)[
        "events"
    ]
    assert [e["phase"] for e in events if e["kind"] == "phase-finished"] == [
        "preflight",
        "migrate(pre)",
        "prepare",
        "rollout",
        "verify",
        "finalize",
        "migrate(post)",
        "cleanup",
    ]
    leftover = [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert leftover == []
    assert not any(
        "zdu_demo.demo_app" in " ".join(p.info["cmdline"] or [])
        and str(tmp_path) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (.ci/run installs it)")
def test_the_same_curl_loop_sees_failures_during_recreate(tmp_path):
    """The check above can fail: the maintenance-window way, on the same fleet, loses requests."""
    config = write_config(tmp_path, strategy="recreate", probe={"dry_run": True})
    up = zdu("local", "up", str(config))
    assert up.returncode == 0, up.stderr
    running = tmp_path / "curl-running"
    running.touch()
    curl = subprocess.Popen(
        ["bash", "-c", CURL_LOOP, "curl-loop", str(running), up.stdout.strip()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        upgraded = zdu("upgrade", str(config), "--json")
    finally:
        running.unlink()
        codes = curl.communicate(timeout=30)[0].split()
        zdu("local", "down", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["verdicts"][0]["values"]["failed_requests"] > 0
    assert set(codes) - {"200"}, "recreate should have made curl see errors"


def test_upgrade_without_a_running_fleet_is_refused_with_exit_2(tmp_path):
    config = write_config(tmp_path)
    done = zdu("upgrade", str(config))
    assert done.returncode == 2
    assert "zdu local up" in done.stderr
