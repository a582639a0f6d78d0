"""A plugin whose hook implementation asks for an argument the hook does not have."""

from zdu.plugins import hookimpl


@hookimpl
def zdu_phase_finished(phase: str, result: str) -> None:  # the hook has "outcome", not "result"
    """Never called: zdu refuses the plugin."""
