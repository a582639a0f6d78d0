import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import write_config
from zdu.errors import PreflightError
from zdu.model import Version
from zdu.policy import check_upgrade_path


@pytest.mark.parametrize(
    ("current", "release"),
    [
        ("16.5.0", "16.5.1"),  # patch
        ("16.5.3", "16.6.0"),  # next minor
        ("16.5.3", "16.6.0-rc42"),  # a release candidate of the next minor
        ("16.5.3", "16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a"),  # an auto-deploy package of the next minor
        ("16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a", "16.6.202310250900-b1b2c3d4e5f.f9e8d7c6b5a"),
        ("16.6.0-rc42", "16.6.0"),
        ("16.11.4", "17.0.0"),  # across a major, from the last minor
    ],
)
def test_allowed(current, release):
    check_upgrade_path(Version.parse(current), Version.parse(release))


@pytest.mark.parametrize(
    ("current", "release", "message"),
    [
        (
            "16.5.0",
            "16.7.0",
            "skips 16.6 from 16.5.0: zero-downtime upgrades go one minor version at a time; "
            "upgrade to 16.6 first",
        ),
        (
            "16.7.0",
            "16.9.1",
            "skips 16.8 from 16.7.0: zero-downtime upgrades go one minor version at a time; "
            "upgrade to 16.8 first (16.8 is a required upgrade stop)",
        ),
        ("16.10.0", "17.1.0", "skips 16.11, 17.0 from 16.10.0"),
        ("16.10.0", "17.0.0", "(16.11 is a required upgrade stop)"),
        ("16.6.0", "16.5.9", "is not newer than the running version 16.6.0"),
        ("16.6.0", "16.6.0", "is not newer"),
        ("16.5.0", "16.7.202310241220-a1b2c3d4e5f.f9e8d7c6b5a", "skips 16.6"),
    ],
)
def test_refused_with_the_reason(current, release, message):
    with pytest.raises(PreflightError) as caught:
        check_upgrade_path(Version.parse(current), Version.parse(release))
    assert message in str(caught.value)
    assert f"release.version {release}" in str(caught.value)


def test_skipping_a_minor_is_refused_by_the_command_with_exit_2_before_anything_runs(tmp_path, zdu_state_dir):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('version = "16.6.0"', 'version = "16.7.0"'))
    zdu = str(Path(sys.executable).parent / "zdu")
    up = subprocess.run([zdu, "local", "up", str(config)], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        done = subprocess.run([zdu, "upgrade", str(config)], capture_output=True, text=True, timeout=120)
        status = subprocess.run(
            [zdu, "status", "--config", str(config), "--json"], capture_output=True, text=True
        )
    finally:
        subprocess.run([zdu, "local", "down", str(config)], capture_output=True, timeout=120)
    assert done.returncode == 2
    assert "release.version 16.7.0 skips 16.6 from 16.5.0" in done.stderr
    assert '"upgrades": []' in status.stdout  # refused before anything was recorded or changed


def test_a_minor_past_the_last_of_its_major_names_the_next_series():
    expected = r"16\.12\.0 does not follow 16\.11\.0: after 16\.11 comes 17\.0"
    with pytest.raises(PreflightError, match=expected):
        check_upgrade_path(Version.parse("16.11.0"), Version.parse("16.12.0"))
