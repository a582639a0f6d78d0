"""An operator steers a running `zdu upgrade` from another shell: pause, resume, abort, promote, SIGTERM.

A real `zdu upgrade` process upgrades a real local fleet (nginx, demo app instances) with
blue-green and a long scale-down delay; the test, as another shell, runs `zdu pause|abort|promote ID`
while it waits, or sends it SIGTERM. The journal says who decided and when.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zdu.journal import Journal

from .conftest import FROM, TO, Traffic, write_config
from .test_resume import served_versions

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")


def zdu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZDU, *args], capture_output=True, text=True, timeout=180)


def config_of(tmp_path: Path) -> Path:
    return write_config(
        tmp_path, strategy="blue-green", options={"scale_down_delay": 600, "preview_seconds": 1}
    )


def start_waiting(config: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `zdu upgrade` (or `zdu resume ID`); return it and the id once it waits out scale_down_delay."""
    process = subprocess.Popen(
        [ZDU, *(args or ("upgrade", str(config))), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    journal = Journal(config.parent / "state" / "journal.sqlite")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for record in journal.upgrades("e2e", limit=1):
            events = journal.events(record.id)
            if record.status.value == "running" and events and events[-1].kind != "phase-finished":
                steps = [e for e in events if e.kind == "step-started"]
                if (
                    steps
                    and steps[-1].message.startswith("keep ")
                    and events.index(steps[-1]) > len(events) - 4
                ):
                    return process, record.id
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.kill()
    pytest.fail("the upgrade never reached its scale-down delay")


def finished(process: subprocess.Popen[str]) -> tuple[int, dict]:
    out, _ = process.communicate(timeout=60)
    return process.returncode, json.loads(out)


def test_pause_from_another_shell_then_resume(tmp_path, fleet):
    config = config_of(tmp_path)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    process, upgrade_id = start_waiting(config)

    paused = zdu("pause", upgrade_id, "--actor", "alice@ops", "--json")
    assert paused.returncode == 0, paused.stderr
    code, report = finished(process)
    assert (code, report["status"]) == (4, "paused")
    assert "paused by alice@ops" in report["error"]
    again = zdu("pause", upgrade_id)  # nothing runs it now
    assert again.returncode == 2 and "no process runs it" in " ".join(again.stderr.split())

    resumed, _ = start_waiting(config, "resume", upgrade_id, "--actor", "bob@ops")
    assert zdu("promote", upgrade_id, "--json").returncode == 0
    code, report = finished(resumed)
    assert (code, report["status"]) == (0, "succeeded"), report
    assert served_versions(config) == [(TO, 3)]
    traffic.stop()
    assert traffic.failures() == []
    events = Journal(tmp_path / "state" / "journal.sqlite").events(upgrade_id)
    request = next(e for e in events if e.kind == "pause-requested")
    assert request.data["by"] == "alice@ops" and request.at == json.loads(paused.stdout)["requested_at"]
    assert any(e.kind == "resumed" and e.data["by"] == "bob@ops" for e in events)


def test_abort_from_another_shell_rolls_back(tmp_path, fleet):
    config = config_of(tmp_path)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    process, upgrade_id = start_waiting(config)

    aborted = zdu("abort", upgrade_id, "--actor", "carol@ops")
    assert aborted.returncode == 0, aborted.stderr
    code, report = finished(process)
    assert (code, report["status"], report["error"]) == (1, "rolled_back", "aborted by carol@ops")
    assert served_versions(config) == [(FROM, 3)]
    traffic.stop()
    assert traffic.failures() == []
    assert traffic.responses[-1].version == FROM


def test_promote_from_another_shell_skips_the_scale_down_delay(tmp_path, fleet):
    config = config_of(tmp_path)
    fleet(config)
    process, upgrade_id = start_waiting(config)
    started = time.monotonic()

    promoted = zdu("promote", upgrade_id, "--actor", "dave@ops")
    assert promoted.returncode == 0, promoted.stderr
    code, report = finished(process)
    assert (code, report["status"]) == (0, "succeeded"), report
    assert time.monotonic() - started < 60  # scale_down_delay is 600 s
    assert served_versions(config) == [(TO, 3)]
    events = Journal(tmp_path / "state" / "journal.sqlite").events(upgrade_id)
    assert [e.data["by"] for e in events if e.kind == "promote"] == ["dave@ops"]
    assert any(e.kind == "wait-skipped" for e in events)


def test_sigterm_pauses_and_resume_succeeds(tmp_path, fleet):
    config = config_of(tmp_path)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    process, upgrade_id = start_waiting(config)

    process.send_signal(signal.SIGTERM)
    code, report = finished(process)
    assert (code, report["status"]) == (4, "paused"), report
    assert f"zdu resume {upgrade_id}" in report["error"]

    resumed, _ = start_waiting(config, "resume", upgrade_id)
    assert zdu("promote", upgrade_id).returncode == 0
    code, report = finished(resumed)
    assert (code, report["status"]) == (0, "succeeded"), report
    assert served_versions(config) == [(TO, 3)]
    traffic.stop()
    assert traffic.failures() == []
