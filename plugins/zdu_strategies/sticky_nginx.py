"""``sticky-nginx``: a page's assets come from the version that rendered the page while versions are mixed.

The cure for the mixed-version asset hazard that needs nothing but the router: a page rendered by
version N asks for ``/assets/application-<hash>.js``, which only N has; with affinity on, nginx names
the group that answered in a cookie and sends the client's asset requests to the same group. Written
over :meth:`zdu.platform.Router.set_affinity` alone, so it combines with every rollout strategy
(``rolling``, ``blue-green``, ...) on every platform whose router supports affinity.

What is pinned is the layer's ``affinity`` setting (see :class:`StickyNginxConfig`): ``assets`` (the
default) pins only the assets of the page that set the cookie, briefly, and lets every page follow the
weights; ``session`` pins a visitor's every request to the version that first served it. Measured
(``bench/layer_costs.py``, docs/traffic-layers.md), ``session`` concentrates the load: as ``rolling``
drains the old instances, the last ones carry every visitor pinned to them (95 requests/s each against
1 for a new instance), and the new version is barely seen before the old one is gone. ``assets`` keeps
every instance within its share and still has no asset error.

* ``prepare``: affinity on, before the first new instance takes traffic;
* ``finalize`` (after the strategy's finalize, when only the new version serves): affinity off;
* ``rollback`` (after the strategy's rollback has put the old version back): affinity off.

A client whose group stops taking traffic (its weight drops to 0, its instances go) moves to the
groups that do on its next page; until that group is gone its assets still come from it.
"""

from __future__ import annotations

import attrs

from zdu.plugins import Step, UpgradeContext

__all__ = ["AFFINITY_SETTINGS", "StickyNginx", "StickyNginxConfig"]

_WHAT = {
    "assets": "a page's assets come from the version that rendered it (cookie); pages by weight",
    "session": "each client stays on the version that served it (cookie)",
}


#: The values of ``affinity``.
AFFINITY_SETTINGS = ("assets", "session")


def _one_of_settings(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in AFFINITY_SETTINGS:
        raise ValueError(
            f"layers.sticky-nginx.{attribute.name} must be one of {', '.join(AFFINITY_SETTINGS)}, "
            f"got {value!r}"
        )


@attrs.frozen
class StickyNginxConfig:
    """Options of ``sticky-nginx`` (``[layers.sticky-nginx]``).

    :ivar affinity: what is pinned to a version. ``assets`` (default): only the assets a page
        references go to the version that rendered the page (a cookie sent with ``/assets/`` requests
        only, living 60 s, re-set by every page); pages and every other request follow the weights,
        so every instance takes its share at every moment of the rollout. ``session``: each visitor
        stays on the version that first served it for the whole upgrade (pages, API calls, forms
        posted back to the version that rendered them) -- at the price of the load following the
        visitors: as the old group shrinks, its last instances take all of its visitors.
    """

    affinity: str = attrs.field(default="assets", validator=_one_of_settings)


class StickyNginx:
    """Session affinity to a version for the time of the upgrade."""

    def __init__(self, config: StickyNginxConfig) -> None:
        self.config = config

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Affinity on in ``prepare``, off in ``finalize``; refuses a router that would ignore it."""
        ctx.affinity.check_affinity()  # in preflight: before any migration or instance changes
        return [
            Step("prepare", f"affinity on ({self.config.affinity})", _WHAT[self.config.affinity]),
            Step("finalize", "affinity off", "every request routed by weight again"),
        ]

    def prepare(self, ctx: UpgradeContext) -> None:
        """Switch affinity on (a graceful reload; nothing when it is on already)."""
        with ctx.step("switch affinity on"):
            ctx.affinity.set_affinity(True, self.config.affinity)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Switch affinity off: only the new version serves."""
        with ctx.step("switch affinity off"):
            ctx.affinity.set_affinity(False)

    def rollback(self, ctx: UpgradeContext) -> None:
        """Switch affinity off: the strategy's rollback left only the old version serving."""
        with ctx.step("switch affinity off"):
            ctx.affinity.set_affinity(False)
