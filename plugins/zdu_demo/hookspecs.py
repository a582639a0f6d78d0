"""The demo's hook: ``zdu demo`` asks the plugins of other platforms to run their scenarios.

The local plugin's ``zdu demo`` runs the scenarios on local fleets itself; a scenario of another
platform's strategy (``get``: a GET-like fleet behind HAProxy) is run by that platform's plugin,
which implements :func:`zdu_demo_run_scenarios`. The spec is added to the plugin manager by the demo
(``manager.add_hookspecs(zdu_demo.hookspecs)``) just before it calls the hook, so an implementation
is marked ``@hookimpl(optionalhook=True)``: a plugin manager without the demo's spec loads it all the
same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

from zdu.plugins import PROJECT_NAME, Version

if TYPE_CHECKING:
    from zdu_demo.scenarios import DemoRow, DemoSettings, Scenario

__all__ = ["zdu_demo_run_scenarios"]

_hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@_hookspec
def zdu_demo_run_scenarios(
    scenarios: Sequence[Scenario], settings: DemoSettings, start: Version, startup_delay: float
) -> Mapping[str, DemoRow] | None:
    """Run the scenarios of ``scenarios`` that are yours on a fleet of your own, starting at ``start``.

    Return their rows by scenario key (``None`` or an empty mapping when none is yours). A fleet you
    start must be stopped before you return, also on error or when ``settings.cancel`` is set.

    :param scenarios: the scenarios the local fleets do not run (another platform's strategy).
    :param settings: what every fleet of the demo run shares: the plugin manager, the traffic, the
        console, the cancel flag, and :meth:`~zdu_demo.scenarios.DemoSettings.run_upgrade`.
    :param start: the version the fleet starts at.
    :param startup_delay: seconds a demo-app instance takes to start.
    """
