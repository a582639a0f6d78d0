"""Instrumentor stages as commands: an argument list (no shell), output streamed, a timeout per stage."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence

from zdu.errors import ZduError

__all__ = ["StageFailed", "run_stage"]


class StageFailed(ZduError):
    """An Instrumentor stage exited non-zero, timed out, or could not be started."""


def run_stage(stage: str, argv: Sequence[str], timeout: float, on_output: Callable[[str], None]) -> None:
    """Run one stage's command to its end, each output line passed to ``on_output`` as it arrives.

    The command runs in its own process group; after ``timeout`` seconds the group is killed and
    :class:`StageFailed` names the stage.
    """
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as error:
        raise StageFailed(f"stage {stage}: cannot run {argv[0]!r}: {error}") from None
    last: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            last[:] = [line]
            on_output(line)

    reader = threading.Thread(target=pump, name=f"stage-{stage}", daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        reader.join(5.0)
        raise StageFailed(f"stage {stage} timed out after {timeout:g}s and was stopped") from None
    reader.join(5.0)
    if returncode != 0:
        tail = f": {last[0]}" if last else ""
        raise StageFailed(f"stage {stage} failed (exit {returncode}){tail}")
