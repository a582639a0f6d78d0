"""``recreate``: stop every old instance, then start the new ones.

This is the maintenance-window upgrade users have today, kept as the baseline zdu measures against:
between the last old instance stopping and the first new one becoming ready, nothing serves.
"""

from __future__ import annotations

import attrs

from zdu.plugins import Step, UpgradeContext

__all__ = ["Recreate", "RecreateConfig"]


@attrs.frozen
class RecreateConfig:
    """``recreate`` takes no options."""


class Recreate:
    """Stop all, start all."""

    def __init__(self, config: RecreateConfig) -> None:
        self.config = config

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Stop every old instance, then start as many new ones."""
        return [
            Step(
                "rollout",
                "stop",
                f"{ctx.old_group}: all {ctx.replicas} instances (traffic fails until the new set is ready)",
            ),
            Step("rollout", "start", f"{ctx.new_group}: {ctx.replicas} instances of {ctx.release.version}"),
        ]

    def rollout(self, ctx: UpgradeContext) -> None:
        """Stop the old set, start the new one, route to it."""
        router = ctx.instance_groups.router
        with ctx.step(f"stop {ctx.old_group}"):
            router.set_weights({ctx.new_group: 1})
            ctx.instance_groups.remove_group(ctx.old_group)
        with ctx.step(f"start {ctx.new_group}", replicas=ctx.replicas):
            ctx.instance_groups.scale(ctx.new_group, ctx.release.version, ctx.replicas)
        ctx.gate(f"{ctx.new_group} started")

    def finalize(self, ctx: UpgradeContext) -> None:
        """Nothing is left to remove."""

    def rollback(self, ctx: UpgradeContext) -> None:
        """Start the old set again, route to it, stop the new one."""
        router = ctx.instance_groups.router
        with ctx.step(f"start {ctx.old_group}", replicas=ctx.replicas):
            router.set_weights({ctx.old_group: 1, ctx.new_group: 1})
            ctx.instance_groups.scale(ctx.old_group, ctx.from_version, ctx.replicas)
        with ctx.step(f"stop {ctx.new_group}"):
            router.set_weights({ctx.old_group: 1})
            ctx.instance_groups.remove_group(ctx.new_group)
