"""Instrumentor stages as commands: an argument list (no shell), output streamed, a timeout per stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from zdu.plugins import CommandError, CommandTimeout, LocalCommandExecutor, ZduError

__all__ = ["StageFailed", "run_stage"]


class StageFailed(ZduError):
    """An Instrumentor stage exited non-zero, timed out, or could not be started."""


def run_stage(stage: str, argv: Sequence[str], timeout: float, on_output: Callable[[str], None]) -> None:
    """Run one stage's command to its end, each output line passed to ``on_output`` as it arrives.

    The command runs in its own session, through the same local executor migration commands use;
    after ``timeout`` seconds the session is stopped and :class:`StageFailed` names the stage.
    """
    try:
        result = LocalCommandExecutor().run(argv, {}, timeout, on_output)
    except CommandTimeout:
        raise StageFailed(f"stage {stage} timed out after {timeout:g}s and was stopped") from None
    except CommandError as error:
        raise StageFailed(f"stage {stage}: {error}") from None
    if result.returncode != 0:
        last = result.output.rsplit("\n", 1)[-1] if result.output else ""
        tail = f": {last}" if last else ""
        raise StageFailed(f"stage {stage} failed (exit {result.returncode}){tail}")
