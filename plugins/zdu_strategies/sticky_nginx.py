"""``sticky-nginx``: keep each client on the version that first served it while versions are mixed.

The cure for the mixed-version asset hazard that needs nothing but the router: a page rendered by
version N asks for ``/assets/application-<hash>.js``, which only N has; with affinity on, nginx names
the group that answered in a cookie and sends the client's next requests to the same group, so the
assets come from the version that rendered the page. Written over :meth:`zdu.platform.Router.set_affinity`
alone, so it combines with every rollout strategy (``rolling``, ``blue-green``, ...) on every platform
whose router supports affinity.

* ``prepare``: affinity on, before the first new instance takes traffic;
* ``finalize`` (after the strategy's finalize, when only the new version serves): affinity off;
* ``rollback`` (after the strategy's rollback has put the old version back): affinity off.

A client whose group stops taking traffic (its weight drops to 0, its instances go) moves to the
groups that do on its next page; until that group is gone its assets still come from it.
"""

from __future__ import annotations

import attrs

from zdu.context import UpgradeContext
from zdu.strategy import Step

__all__ = ["StickyNginx", "StickyNginxConfig"]


@attrs.frozen
class StickyNginxConfig:
    """``sticky-nginx`` takes no options."""


class StickyNginx:
    """Session affinity to a version for the time of the upgrade."""

    def __init__(self, config: StickyNginxConfig) -> None:
        self.config = config

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Affinity on in ``prepare``, off in ``finalize``; refuses a router that would ignore it."""
        ctx.platform.router.check_affinity()  # in preflight: before any migration or instance changes
        return [
            Step("prepare", "affinity on", "each client stays on the version that served it (cookie)"),
            Step("finalize", "affinity off", "every request routed by weight again"),
        ]

    def prepare(self, ctx: UpgradeContext) -> None:
        """Switch affinity on (a graceful reload; nothing when it is on already)."""
        with ctx.step("switch affinity on"):
            ctx.platform.router.set_affinity(True)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Switch affinity off: only the new version serves."""
        with ctx.step("switch affinity off"):
            ctx.platform.router.set_affinity(False)

    def rollback(self, ctx: UpgradeContext) -> None:
        """Switch affinity off: the strategy's rollback left only the old version serving."""
        with ctx.step("switch affinity off"):
            ctx.platform.router.set_affinity(False)
