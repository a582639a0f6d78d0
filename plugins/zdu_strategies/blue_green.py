"""``blue-green``: start a full new set beside the old one, verify it, switch, keep the old set a while.

Like Argo Rollouts' BlueGreen: the new set starts out of user traffic, the probes verify it through
a preview route (pre-promotion analysis), the router switches all traffic at once, and the old set
stays up for ``scale_down_delay`` seconds so that a rollback is a switch back.
"""

from __future__ import annotations

import attrs

from zdu.plugins import Step, UpgradeContext

__all__ = ["BlueGreen", "BlueGreenConfig"]


@attrs.frozen
class BlueGreenConfig:
    """Options of ``blue-green``.

    :ivar scale_down_delay: seconds the old set stays up after the switch (rollback is a switch back).
    :ivar preview_seconds: how long the probes verify the new set through the preview route before the
        switch (0 skips the analysis).
    """

    scale_down_delay: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    preview_seconds: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))


class BlueGreen:
    """Two full sets, one switch."""

    def __init__(self, config: BlueGreenConfig) -> None:
        self.config = config

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Start, verify, switch, wait, remove."""
        return [
            Step(
                "rollout",
                "start",
                f"{ctx.new_group}: {ctx.replicas} instances of {ctx.release.version}, no traffic",
            ),
            Step(
                "rollout", "verify", f"probes against the preview route for {self.config.preview_seconds:g}s"
            ),
            Step("rollout", "switch", f"all traffic from {ctx.old_group} to {ctx.new_group}"),
            Step(
                "finalize",
                "wait",
                f"{self.config.scale_down_delay:g}s with {ctx.old_group} kept for a switch back",
            ),
            Step("finalize", "remove", ctx.old_group),
        ]

    def rollout(self, ctx: UpgradeContext) -> None:
        """Start the new set out of traffic, verify it through the preview route, switch to it."""
        router = ctx.instance_groups.router
        if router.weights().get(ctx.new_group, 0) == 0:
            with ctx.step(f"start {ctx.new_group}", replicas=ctx.replicas):
                # only the old group takes traffic; its weight is kept (no routing change, no reload)
                router.set_weights({ctx.old_group: router.weights().get(ctx.old_group) or 1})
                ctx.instance_groups.scale(ctx.new_group, ctx.release.version, ctx.replicas)
            ctx.gate(f"{ctx.new_group} started")
            if self.config.preview_seconds > 0:
                with ctx.step(f"verify {ctx.new_group} through the preview route"):
                    url = ctx.preview_route.set_preview(ctx.new_group)
                    try:
                        if url is not None:
                            ctx.analyse(url, self.config.preview_seconds, f"preview of {ctx.new_group}")
                    finally:
                        ctx.preview_route.set_preview(None)
        with ctx.step(f"switch traffic to {ctx.new_group}"):
            router.set_weights({ctx.new_group: 1})
        ctx.gate(f"switched to {ctx.new_group}")

    def finalize(self, ctx: UpgradeContext) -> None:
        """Keep the old set for ``scale_down_delay`` seconds (gating), then remove it."""
        groups = {g.name for g in ctx.instance_groups.groups()}
        if ctx.old_group not in groups:
            return
        with ctx.step(f"keep {ctx.old_group} for {self.config.scale_down_delay:g}s"):
            ctx.wait(self.config.scale_down_delay, f"scale-down delay of {ctx.old_group}")
        with ctx.step(f"remove {ctx.old_group}"):
            ctx.instance_groups.remove_group(ctx.old_group)

    def rollback(self, ctx: UpgradeContext) -> None:
        """Switch back to the old set (starting it again if it is gone), then remove the new one."""
        router = ctx.instance_groups.router
        ctx.preview_route.set_preview(None)
        old = next((g for g in ctx.instance_groups.groups() if g.name == ctx.old_group), None)
        if old is None or old.ready < ctx.replicas:
            with ctx.step(f"start {ctx.old_group} again", replicas=ctx.replicas):
                ctx.instance_groups.scale(ctx.old_group, ctx.from_version, ctx.replicas)
        with ctx.step(f"switch traffic back to {ctx.old_group}"):
            router.set_weights({ctx.old_group: 1})
        ctx.restored(ctx.old_group)
        with ctx.step(f"remove {ctx.new_group}"):
            ctx.instance_groups.remove_group(ctx.new_group)
