"""Detached processes, named by pid and start time so that a reused pid is never mistaken for them.

The local platform's processes must outlive the ``zdu`` command that started them, and be found again
by the next one. They are spawned in their own session (so a Ctrl-C in the terminal does not reach
them), with output to a log file, and remembered as a :class:`ProcessIdentity`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs
import psutil

__all__ = ["ProcessIdentity", "spawn", "stop_processes", "tail"]

logger = logging.getLogger("zdu.local")

_START_TIME_TOLERANCE = 0.05
_POLL = 0.05


@attrs.frozen
class ProcessIdentity:
    """A process: its pid and its start time (seconds since the epoch, as psutil reports it)."""

    pid: int
    started_at: float

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """Return the identity of the running process ``pid``."""
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """Return the process, when it still runs; None when it exited (or its pid now belongs to another)."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started_at) > _START_TIME_TOLERANCE:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                _reap(self.pid)
                return None
        except psutil.Error:
            return None
        return process

    def alive(self) -> bool:
        """Whether the process runs (a zombie does not; one that is our child is reaped)."""
        return self.process() is not None

    def signal_group(self, signum: signal.Signals) -> bool:
        """Send ``signum`` to the process's group (its session, as spawned); False when it is gone."""
        if not self.alive():
            return False
        try:
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


def _reap(pid: int) -> int | None:
    """Collect the exit status of ``pid`` when it is a child of ours; its exit code, or None."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if reaped == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def spawn(command: Sequence[str], env: Mapping[str, str], log: Path) -> ProcessIdentity:
    """Start ``command`` (no shell) in a new session, output appended to ``log``, stdin from /dev/null.

    Raises OSError when the program cannot be run.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.posix_spawnp(
            command[0],
            list(command),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM),
            setsigmask=(),
        )
    finally:
        os.close(fd)
    try:
        return ProcessIdentity.of(pid)
    except psutil.NoSuchProcess:
        # It already exited; remember it with a start time no process has, so it reads as dead.
        _reap(pid)
        return ProcessIdentity(pid, 0.0)


def stop_processes(processes: Iterable[ProcessIdentity], grace: float) -> None:
    """Stop ``processes`` gracefully: SIGTERM to each one's group, then SIGKILL after ``grace`` seconds.

    Returns once every one of them has exited.
    """
    running = [p for p in processes if p.signal_group(signal.SIGTERM)]
    running = wait_for_exits(running, grace)
    for process in running:
        logger.warning("process %d did not stop within %.1fs of SIGTERM: SIGKILL", process.pid, grace)
        process.signal_group(signal.SIGKILL)
    wait_for_exits(running, 5.0)


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def wait_for_exits(processes: Sequence[ProcessIdentity], timeout: float) -> list[ProcessIdentity]:
    """Wait, at most ``timeout`` seconds, until ``processes`` exit; return those still running.

    Wakes on the exits themselves (Linux pidfds, readable when a process ends, child or not), not on
    a poll interval; falls back to polling every 50 ms where pidfds are missing.
    """
    deadline = time.monotonic() + timeout
    running = [p for p in processes if p.alive()]
    fds = {p: _pidfd(p.pid) for p in running}
    try:
        while running and (left := deadline - time.monotonic()) > 0:
            watched = [fd for p, fd in fds.items() if fd is not None and p in running]
            if watched and len(watched) == len(running):
                poller = select.poll()  # not select(): a busy process has descriptors above 1024
                for descriptor in watched:
                    poller.register(descriptor, select.POLLIN)
                poller.poll(left * 1000)
            else:
                time.sleep(min(_POLL, left))
            running = [p for p in running if p.alive()]
    finally:
        for opened in fds.values():
            if opened is not None:
                os.close(opened)
    return running


def tail(path: Path, lines: int = 10) -> str:
    """Return the last ``lines`` lines of the text file ``path`` (empty when it is missing)."""
    with contextlib.suppress(OSError), path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - 8192))
        text = file.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])
    return ""
