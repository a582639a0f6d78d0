"""The journal's disk is full or read-only: zdu stops with one line naming the journal, never a traceback.

Both faults are real to the kernel, without a loop device or a mount: the tests run as root, whom
``chmod`` does not stop, so the read-only journal is made immutable (``chattr +i``, which stops root
too); the full disk is a file-size limit (``RLIMIT_FSIZE``) on the ``zdu`` process, so that SQLite's
writes past it fail as they would on a full disk. The fleet's own processes lift that limit
(``prlimit`` in their command): their database is on another disk in a real deployment.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zdu.journal import Journal
from zdu_demo import demo_app_command
from zdu_demo.scenarios import create_mixed_database

from .conftest import FROM, TO, Traffic, write_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Make ``paths`` immutable (``chattr +i``) for the block; skip when the filesystem cannot."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done: list[Path] = []
    try:
        for path in paths:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                pytest.skip(f"cannot make {path} immutable here: {result.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=False)


def versions(platform) -> list[tuple[str, int]]:
    fresh = type(platform)(platform.config, platform.env)  # another process's view: the state file
    return [(str(g.version), g.ready) for g in fresh.groups()]


def test_a_read_only_journal_stops_the_upgrade_before_anything_changes(tmp_path, fleet):
    config = write_config(tmp_path)
    platform = fleet(config)
    journal = tmp_path / "state" / "journal.sqlite"
    Journal(journal)  # the journal of earlier upgrades, on a disk that has since turned read-only
    pids = sorted(i.id for g in platform.groups() for i in g.instances)
    traffic = Traffic(platform.router.url).start()
    with immutable(journal, journal.parent):
        result = subprocess.run([ZDU, "upgrade", str(config)], capture_output=True, text=True, timeout=120)
    traffic.stop()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("zdu: error:")]
    # SQLite's own words follow ("unable to open database file": it cannot create its -wal file)
    assert len(errors) == 1 and errors[0].startswith(f"zdu: error: the journal {journal}: "), result.stderr
    # nothing was changed: the same instances of the old version serve, none failed a request
    assert versions(platform) == [(FROM, 3)]
    assert sorted(i.id for g in platform.groups() for i in g.instances) == pids
    assert traffic.failures() == [] and {r.version for r in traffic.responses} == {FROM}


def test_a_journal_whose_disk_fills_mid_upgrade_stops_it_resumable(tmp_path, fleet):
    database = tmp_path / "gitlab.sqlite"
    create_mixed_database(database)
    # the fleet's processes are not limited: only zdu's own writes meet the full disk
    command = ["prlimit", "--fsize=unlimited", "--", *demo_app_command(0.3, "--database", str(database))]
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit is not installed")
    config = write_config(tmp_path, platform={"command": command})
    platform = fleet(config)
    journal_path = tmp_path / "state" / "journal.sqlite"
    Journal(journal_path)
    # one more page than the journal holds now: the upgrade starts, and its records soon fill the disk
    limit = journal_path.stat().st_size + 4096

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    traffic = Traffic(platform.router.url).start()
    result = subprocess.run(
        [ZDU, "upgrade", str(config)], capture_output=True, text=True, timeout=120, preexec_fn=full_disk
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"zdu: error: the journal {journal_path}: "), result.stderr
    # it stopped acting where the journal stopped: the upgrade is in the journal, in progress
    (record,) = Journal(journal_path).upgrades("e2e")
    assert record.status.in_progress and record.phase not in (None, "", "preflight"), record
    # once the disk has room again, the upgrade resumes from the journal and ends on the new version
    resumed = subprocess.run(
        [ZDU, "resume", record.id, "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    traffic.stop()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "succeeded" in resumed.stdout
    assert versions(platform) == [(TO, 3)]
    # users saw no failure through it all: the fleet kept serving while zdu was stopped
    assert traffic.failures() == []
