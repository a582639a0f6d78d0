"""A target's upgrade lock as a file on this machine, for platforms whose targets live here.

Platforms implement :meth:`zdu.platform.Platform.hold_lock` where the target lives (a Lease on
Kubernetes); those whose fleet is driven from this machine can use :func:`file_lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from zdu.errors import TargetBusy

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: Path, target: str, holder: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` naming ``holder``; a crashed holder's lock is released.

    :raises TargetBusy: another process holds it; the message names that holder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder_now = file.read().strip() or "another process"
            raise TargetBusy(f"target {target!r} is being upgraded by {holder_now}") from None
        try:
            file.truncate(0)
            file.write(holder)
            file.flush()
            yield
        finally:
            file.truncate(0)
            fcntl.flock(file, fcntl.LOCK_UN)
