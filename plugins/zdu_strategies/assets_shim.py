"""``assets-shim``: serve ``/assets/`` from a store holding both versions' assets while versions are mixed.

The other cure for the mixed-version asset hazard: a page rendered by either version finds its
fingerprinted assets, whichever instance the page came from, because ``/assets/`` is not served by the
instances at all but by the platform's :class:`~zdu.platform.AssetStore` (on the local platform, nginx
reading a directory). Clients stay free to move between versions, so the load stays balanced by
weight. Written over ``Platform.assets`` and :meth:`zdu.platform.Router.route_assets`, so it combines
with every rollout strategy.

* ``preflight`` (through :meth:`AssetsShim.plan`): a platform without an assets store is refused;
* ``prepare``: publish the old version's assets and the new version's, then route ``/assets/`` to the
  store, all before the first new instance takes traffic;
* ``finalize``: prune the store to the current and the previous version (the one the upgrade came
  from), so that a rollback still finds the old assets. The route stays on until the upgrade's
  ``cleanup``, whose ``remove_managed_routes`` takes it away, so the window in which a failed gate
  can still roll back is covered too; after the upgrade the instances serve their own assets again
  (a later upgrade without this layer then does not depend on a store that lacks its assets);
* ``rollback`` (after the strategy's rollback has put the old version back): route off; nothing is
  pruned (the old version's assets stay published for the next attempt).
"""

from __future__ import annotations

import attrs

from zdu.plugins import AssetStore, PreflightError, Step, UpgradeContext

__all__ = ["AssetsShim", "AssetsShimConfig"]


@attrs.frozen
class AssetsShimConfig:
    """``assets-shim`` takes no options."""


def _store(ctx: UpgradeContext) -> AssetStore:
    store = ctx.asset_store.assets
    if store is None:
        raise PreflightError(
            f"strategy.layers: assets-shim needs an assets store, and the platform "
            f"{ctx.target.platform!r} of target {ctx.target.name!r} has none"
        )
    return store


class AssetsShim:
    """Both versions' assets in one store, routed as ``/assets/`` for the time of the upgrade."""

    def __init__(self, config: AssetsShimConfig) -> None:
        self.config = config

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Publish, route, prune; raises PreflightError when the platform has no assets store."""
        _store(ctx)
        return [
            Step("prepare", "publish assets", f"{ctx.from_version} and {ctx.release.version} to the store"),
            Step("prepare", "route /assets/", "to the assets store"),
            Step("finalize", "prune assets", f"keep only {ctx.from_version} and {ctx.release.version}"),
        ]

    def prepare(self, ctx: UpgradeContext) -> None:
        """Publish the old and the new version's assets, then serve ``/assets/`` from the store."""
        store = _store(ctx)
        for version in (ctx.from_version, ctx.release.version):
            with ctx.step(f"publish the assets of {version}", version=str(version)):
                store.publish(version)
        with ctx.step("route /assets/ to the assets store"):
            ctx.assets_route.route_assets(True)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Prune the store to the current and the previous version; the route stays until cleanup."""
        store = _store(ctx)
        keep = [ctx.from_version, ctx.release.version]
        with ctx.step("prune the assets store", keep=[str(v) for v in keep]):
            store.prune(keep)

    def rollback(self, ctx: UpgradeContext) -> None:
        """Serve ``/assets/`` from the instances again (only the old version serves); prune nothing."""
        with ctx.step("route /assets/ to the instances again"):
            ctx.assets_route.route_assets(False)
