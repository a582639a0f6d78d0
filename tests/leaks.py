"""Looking for a planted secret in every byte zdu wrote: shared by the tests that plant secrets.

A test plants values containing :data:`MARK` in configuration fields and in what child processes
print, runs real ``zdu`` processes (:func:`run_zdu`), gathers what ``zdu report`` and ``zdu status``
show of every upgrade in the journal (:func:`report_outputs`), and asks :func:`leaks` where the mark
is: in which output, in which file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from zdu.journal import Journal

#: in every planted secret: the searches look for this
MARK = "PLANTED"
ZDU = str(Path(sys.executable).parent / "zdu")
#: what a ``zdu`` run finds on PATH: the test's environment (ansible-playbook beside its Python), the
#: system's programs (nginx, HAProxy) and nothing else
SYSTEM_PATH = os.pathsep.join(
    [
        str(Path(sys.executable).parent),
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
)


def run_zdu(
    *args: str, cwd: Path, path: str = "/usr/bin:/bin", timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    """Run ``zdu -vv ARGS`` in ``cwd``, its default state directory and HOME inside ``cwd``; capture all."""
    env = {"ZDU_STATE_DIR": str(cwd / "default-state"), "PATH": path, "HOME": str(cwd)}
    return subprocess.run(
        [ZDU, "-vv", *args], cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False
    )


def report_outputs(journal: Journal, cwd: Path, *, path: str = "/usr/bin:/bin") -> list[bytes]:
    """What ``zdu report`` (text, JSON, HTML) shows of every upgrade in ``journal``, and ``zdu status``.

    Each command must succeed; the HTML files are written in ``cwd``.
    """
    outputs: list[bytes] = []
    for record in journal.upgrades():
        for args in (("report", record.id), ("report", "--json", record.id)):
            shown = run_zdu(*args, "--journal", str(journal.path), cwd=cwd, path=path)
            assert shown.returncode == 0, shown.stderr.decode()
            outputs += [shown.stdout, shown.stderr]
        html = cwd / f"{record.id}.html"
        shown = run_zdu(
            "report", record.id, "--journal", str(journal.path), "--html", str(html), cwd=cwd, path=path
        )
        assert shown.returncode == 0, shown.stderr.decode()
        outputs += [shown.stdout, shown.stderr, html.read_bytes()]
    listed = run_zdu("status", "--journal", str(journal.path), cwd=cwd, path=path)
    assert listed.returncode == 0, listed.stderr.decode()
    outputs += [listed.stdout, listed.stderr]
    return outputs


def files_under(*directories: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every regular file under ``directories`` (recursively), but those in ``skip``."""
    skipped = {p.resolve() for p in skip}
    return [
        p
        for directory in directories
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.resolve() not in skipped
    ]


def leaks(outputs: Sequence[bytes], files: Iterable[Path], mark: str = MARK) -> list[str]:
    """Where ``mark`` occurs: ``output N`` (its index in ``outputs``) and the files that hold it.

    Each comes with the planted values found there and the bytes around the first, so that a failure
    says what leaked and how.
    """
    found: list[str] = []
    needle = mark.encode()
    for index, output in enumerate(outputs):
        if needle in output:
            found.append(f"output {index}: {_describe(output, needle)}")
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:  # a socket, or a file removed while looking (a pid file)
            continue
        if needle in data:
            found.append(f"{path}: {_describe(data, needle)}")
    return found


def _describe(data: bytes, needle: bytes) -> str:
    values = sorted(
        {
            m.decode("utf-8", "replace")
            for m in re.findall(rb"[\w.-]*" + re.escape(needle) + rb"[\w.-]*", data)
        }
    )
    at = data.index(needle)
    return f"{', '.join(values)} in {data[max(0, at - 80) : at + 80].decode('utf-8', errors='replace')!r}"
