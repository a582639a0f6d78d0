"""Running a command on this machine: the :class:`~zdu.migrations.CommandExecutor` of last resort.

Used by ``gitlab-rake`` when the platform offers no executor of its own (an Omnibus node where zdu
itself runs, a test with a stand-in script).
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import attrs

from zdu.migrations import CommandError, CommandResult, CommandTimeout
from zdu.secret import redact

__all__ = ["LocalCommandExecutor"]

_END = None
_OUTPUT_GRACE = 1.0  # seconds


@attrs.frozen
class LocalCommandExecutor:
    """Runs commands as child processes of zdu: no shell, output streamed line by line, timeout honoured.

    The command runs in a session of its own, so that on timeout it is stopped together with its
    children (SIGTERM, then SIGKILL after ``stop_grace`` seconds). Its standard input is empty. Every
    line of its output is redacted (:func:`zdu.secret.redact`) before anyone sees it: a command that
    prints a password it was given does not put it in the journal.

    :ivar cwd: the working directory of the commands (default: zdu's own).
    :ivar stop_grace: seconds between SIGTERM and SIGKILL when a command is stopped.
    :ivar max_output_lines: how many of the last lines of output :class:`CommandResult` keeps (every
        line is still passed to ``on_output``).
    """

    cwd: Path | None = None
    stop_grace: float = 5.0
    max_output_lines: int = 10_000

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str | None],
        timeout: float,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run ``argv`` to its end; see :meth:`zdu.migrations.CommandExecutor.run`."""
        if not argv:
            raise CommandError("no command to run: the command is empty")
        environment = dict(os.environ)
        for key, value in env.items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise CommandError(f"cannot run {argv[0]!r}: {error.strerror or error}") from None
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(
            target=_read_lines, args=(process.stdout, lines), name=f"output of {argv[0]}", daemon=True
        )
        reader.start()
        kept: collections.deque[str] = collections.deque(maxlen=self.max_output_lines)
        deadline = time.monotonic() + timeout
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    self._stop(process)
                    self._drain(lines, kept, on_output)
                    raise CommandTimeout(
                        f"{' '.join(argv)} did not finish within {timeout:g}s and was stopped",
                        output="\n".join(kept),
                    )
                try:
                    line = lines.get(timeout=min(deadline - now, 0.2))
                except queue.Empty:
                    # A child the command left behind may keep the output open: stop waiting for the
                    # end of the output a moment after the command itself has exited.
                    if exited_at is None and process.poll() is not None:
                        exited_at = now
                    if exited_at is not None and now - exited_at > _OUTPUT_GRACE:
                        break
                    continue
                if line is _END:
                    break
                kept.append(line)
                if on_output is not None:
                    on_output(line)
            while (returncode := process.poll()) is None:
                if time.monotonic() >= deadline:
                    self._stop(process)
                    raise CommandTimeout(
                        f"{' '.join(argv)} did not finish within {timeout:g}s and was stopped",
                        output="\n".join(kept),
                    )
                time.sleep(0.05)
        except BaseException:
            self._stop(process)
            raise
        finally:
            process.stdout.close()
        return CommandResult(returncode=returncode, output="\n".join(kept))

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the command's whole session, SIGKILL what is left of it after the grace period."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(self.stop_grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    @staticmethod
    def _drain(
        lines: queue.Queue[str | None], kept: collections.deque[str], on_output: Callable[[str], None] | None
    ) -> None:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            if line is _END:
                return
            kept.append(line)
            if on_output is not None:
                on_output(line)


def _read_lines(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(redact(raw.decode("utf-8", errors="replace").rstrip("\r\n")))
    except (OSError, ValueError):
        pass  # the stream was closed under us: the command was stopped
    finally:
        lines.put(_END)
