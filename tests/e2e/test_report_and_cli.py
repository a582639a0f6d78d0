"""A new user's commands on a real fleet: the report with times and figures, the HTML page in a real
headless Chromium, journals found without --config, warnings summed up, failures told once, no
hard-wrapped lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib import image

from tests.e2e.conftest import write_config
from tests.e2e.observability import ARTIFACTS, TOLERANT, chromium_screenshot
from zdu.report import COLOURS

pytestmark = pytest.mark.slow


def zdu(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The ``zdu`` command as a user runs it: not a terminal (a pipe), in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", "from zdu.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user whose default state directory is empty: journals must be found where upgrades wrote."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ZDU_STATE_DIR", "XDG_STATE_HOME")}
    env["HOME"] = str(home)
    env["COLUMNS"] = "80"  # what a narrow terminal or a CI log would have
    return env


def _hex(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def test_html_report_of_a_real_upgrade_renders_in_chromium_with_its_timeline(
    tmp_path: Path, fleet, user_env: dict[str, str]
) -> None:
    work = tmp_path / "a directory with a rather long name to make paths longer than eighty columns"
    work.mkdir()
    config = write_config(
        work, strategy="rolling", options={"max_surge": 1, "max_unavailable": 0}, probe=TOLERANT
    )
    fleet(config)
    local = zdu("local", "status", "cell.toml", cwd=work, env=user_env)
    assert local.returncode == 0, local.stderr
    rows = [line.split() for line in local.stdout.splitlines() if line.startswith("v16-5-0-")]
    assert len(rows) == 3 and all(r[1] == "16.5.0" and r[4:6] == ["running", "yes"] for r in rows), (
        local.stdout
    )
    assert all(Path(" ".join(r[6:])).is_file() for r in rows)  # the log files (their path has spaces)

    upgraded = zdu("upgrade", "cell.toml", cwd=work, env=user_env)
    assert upgraded.returncode == 0, upgraded.stderr
    upgrade_id = re.search(r"upgrade (\d{8}-\d{6}-[0-9a-f]{6})", upgraded.stdout).group(1)

    local = zdu("local", "status", "cell.toml", cwd=work, env=user_env)
    rows = [line.split() for line in local.stdout.splitlines() if line.startswith("v16-")]
    assert {r[1] for r in rows if r[4] == "running"} == {"16.6.0"}, local.stdout

    assert "requests, 0 failed" not in upgraded.stderr  # the live line is for terminals only

    # found without --config: the journal is beside the configuration (and in the index)
    status = zdu("status", cwd=work, env=user_env)
    assert status.returncode == 0, status.stderr
    assert upgrade_id in status.stdout
    assert "journal" in status.stderr and str(work / "state" / "journal.sqlite") in status.stderr.replace(
        "\n", ""
    )

    page = tmp_path / "out.html"
    report = zdu(
        "report", upgrade_id, "--html", str(page), cwd=tmp_path, env=user_env
    )  # elsewhere: the index
    assert report.returncode == 0, report.stderr
    text = report.stdout
    # times and the probe's figures, phases with durations
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3}\s+rollout\s+succeeded", text), text
    assert re.search(r"http: passed; requests=\d+, failed_requests=0", text), text
    assert re.search(
        r"0 failed requests of \d+ requests: the rate is below [\d.]+% with 95 % confidence", text
    )
    # never hard-wrapped: the whole journal path is on one line of stderr
    assert str(work / "state" / "journal.sqlite") in report.stderr.splitlines()[0]

    shot = ARTIFACTS / f"report-{upgrade_id}.png"
    dom = chromium_screenshot(page, shot)
    print(f"\nscreenshot of the HTML report: {shot}")
    width = re.search(r'data-timeline-width="(\d+)"', dom)
    assert width and int(width.group(1)) >= 1000, "the timeline picture did not load"
    assert f"Upgrade <code>{upgrade_id}</code>" in dom
    pixels = image.imread(shot)[..., :3]
    # the picture is in the screenshot: its bars of successful requests (their own green) are visible
    green = _hex(COLOURS["ok"])
    close = (abs(pixels - green) < 0.03).all(axis=-1)
    assert close.sum() > 2000, f"only {close.sum()} pixels of the requests' green in {shot}"
    # the negative control: a page whose picture is missing shows none of that green
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,AAAA", page.read_text()))
    dom = chromium_screenshot(broken, tmp_path / "broken.png")
    assert not re.search(r'data-timeline-width="[1-9]', dom)
    pixels = image.imread(tmp_path / "broken.png")[..., :3]
    assert (abs(pixels - green) < 0.03).all(axis=-1).sum() < 50


def test_a_failed_upgrade_tells_its_failure_once_and_sums_up_the_probe_warnings(
    tmp_path: Path, fleet, user_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, strategy="recreate", probe={"failure_limit": 0})
    fleet(config)

    upgraded = zdu("upgrade", str(config), cwd=tmp_path, env=user_env)
    assert upgraded.returncode == 1, upgraded.stderr
    stderr = upgraded.stderr
    gate_failures = [line for line in stderr.splitlines() if "probe http" in line and "failed" in line]
    assert len(gate_failures) == 1, stderr
    assert "rolling back (the failure is above)" in stderr
    # the probe's warnings are summed up after the progress, not interleaved with it
    assert "warnings while it ran:" in stderr, stderr
    before_summary = stderr.split("warnings while it ran:")[0]
    assert "WARNING" not in before_summary, stderr
    assert len(stderr.splitlines()) < 40, stderr
    # the same upgrade without summing up (-v) shows the warnings as they come: the instrument sees them
    upgrade_id = re.search(r"upgrade (\d{8}-\d{6}-[0-9a-f]{6})", upgraded.stdout).group(1)
    shown = zdu("--verbose", "report", upgrade_id, "--json", cwd=tmp_path, env=user_env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["status"] == "rolled_back"
    assert any(e["kind"] == "gate-failed" for e in data["events"])
