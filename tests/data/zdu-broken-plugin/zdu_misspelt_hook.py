"""A plugin implementing a hook zdu does not have (a misspelt name)."""

from zdu.plugins import hookimpl


@hookimpl
def zdu_strategys() -> list[object]:  # zdu_strategies
    """Never called: zdu refuses the plugin."""
    return []
