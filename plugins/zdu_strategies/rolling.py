"""``rolling``: replace instances in readiness-gated batches, keeping the fleet's capacity.

Like a Kubernetes Deployment's RollingUpdate: at most ``max_surge`` instances above the desired count,
at most ``max_unavailable`` below it. New instances take traffic only once ready; old ones leave the
router, drain, and stop. The probes gate every batch. Where the platform can scale two groups at once
(capability ``scale-together``), a batch that drains old instances and the batch that starts new ones in their
place are one change: the new ones start while the old ones leave the router and drain.
"""

from __future__ import annotations

import attrs

from zdu.plugins import SCALE_TOGETHER, InstanceGroup, Step, UpgradeContext, ZduError

__all__ = ["Rolling", "RollingConfig"]


def _not_both_zero(instance: RollingConfig, _attribute: attrs.Attribute[int], value: int) -> None:
    if value == 0 and instance.max_surge == 0:
        raise ValueError("max_surge and max_unavailable cannot both be 0: the rollout could never progress")


@attrs.frozen
class RollingConfig:
    """Options of ``rolling``.

    :ivar max_surge: instances allowed above the desired count during the rollout.
    :ivar max_unavailable: instances allowed below the desired count during the rollout (0 keeps
        full capacity, as GitLab advises for zero downtime).
    :ivar pause_after: the batches (counted from 1, as ``zdu plan`` lists them) after which the
        rollout waits for ``zdu promote ID``, the probes gating meanwhile.
    """

    max_surge: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    max_unavailable: int = attrs.field(default=0, validator=[attrs.validators.ge(0), _not_both_zero])
    #: manual pause steps: after these batches (1 is the first), wait, gating, for ``zdu promote ID``
    #: (Argo Rollouts' ``pause: {}``)
    pause_after: tuple[int, ...] = attrs.field(
        default=(), converter=tuple, validator=attrs.validators.deep_iterable(attrs.validators.ge(1))
    )


def _count(groups: list[InstanceGroup], name: str) -> int:
    return next((g.replicas for g in groups if g.name == name), 0)


def _scale_together(ctx: UpgradeContext, old_count: int, new_count: int) -> None:
    """Drain the old group down and start the new group up as one change (independent batches).

    The platform spawns the new instances first, takes the old ones out of the router while the new
    ones start, and routes the new ones once ready: never before the old ones left, so the fleet never
    routes more instances than ``max_surge`` allows. What overlaps is the old ones' drain and the new
    ones' start.
    """
    ctx.scale_together.scale_groups(
        [(ctx.new_group, ctx.release.version, new_count), (ctx.old_group, ctx.from_version, old_count)]
    )


class Rolling:
    """Replace instances batch by batch."""

    def __init__(self, config: RollingConfig) -> None:
        self.config = config

    def _batches(self, total: int, old: int, new: int) -> list[tuple[str, int, int]]:
        """The sequence of (action, old count, new count) from ``old``/``new`` to ``0``/``total``."""
        steps: list[tuple[str, int, int]] = []
        surge, unavailable = self.config.max_surge, self.config.max_unavailable
        while not (new >= total and old == 0):
            up = min(total + surge - (old + new), total - new)
            if up > 0:
                new += up
                steps.append(("up", old, new))
                continue
            down = min(old, (old + new) - (total - unavailable))
            if down <= 0:
                raise ZduError(f"rolling cannot progress from {old} old and {new} new instances")
            old -= down
            steps.append(("down", old, new))
        return steps

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """The batches, from the platform's current state."""
        groups = list(ctx.instance_groups.groups())
        old, new = _count(groups, ctx.old_group), _count(groups, ctx.new_group)
        steps = []
        for number, (action, old_count, new_count) in enumerate(self._batches(ctx.replicas, old, new), 1):
            steps.append(
                Step(
                    "rollout",
                    "scale up" if action == "up" else "drain and scale down",
                    f"{ctx.old_group}={old_count}, {ctx.new_group}={new_count}",
                )
            )
            if number in self.config.pause_after:
                steps.append(Step("rollout", "pause", f"after batch {number}: until 'zdu promote ID'"))
        return steps

    def rollout(self, ctx: UpgradeContext) -> None:
        """Scale the new group up and the old one down, a batch at a time, gating each batch."""
        platform = ctx.instance_groups
        platform.router.set_weights({ctx.old_group: 1, ctx.new_group: 1})
        groups = list(platform.groups())
        old, new = _count(groups, ctx.old_group), _count(groups, ctx.new_group)
        batches = self._batches(ctx.replicas, old, new)
        overlap = ctx.provides(SCALE_TOGETHER)
        index = batch = 0
        promotions = ctx.promotions()
        while index < len(batches):
            action, old_count, new_count = batches[index]
            following = batches[index + 1] if index + 1 < len(batches) else None
            if overlap and action == "down" and following is not None and following[0] == "up":
                # One change: the new ones start while the old ones leave the router and drain.
                _, old_count, new_count = following
                with ctx.step(
                    f"scale {ctx.old_group} to {old_count} while {ctx.new_group} goes to {new_count}"
                ):
                    _scale_together(ctx, old_count, new_count)
                index += 2
            elif action == "up":
                with ctx.step(f"scale {ctx.new_group} to {new_count}"):
                    platform.scale(ctx.new_group, ctx.release.version, new_count)
                index += 1
            else:
                if old_count == 0:  # the last old instances leave with the old group's weight: one change
                    with ctx.step(f"route only {ctx.new_group}"):
                        platform.router.set_weights({ctx.new_group: 1})
                with ctx.step(f"scale {ctx.old_group} to {old_count}"):
                    platform.scale(ctx.old_group, ctx.from_version, old_count)
                index += 1
            ctx.gate(f"{ctx.old_group}={old_count}, {ctx.new_group}={new_count}")
            done, batch = batch, index  # batches done (two at once when they overlapped)
            if any(number in self.config.pause_after for number in range(done + 1, batch + 1)):
                promotions = ctx.wait_for_promotion(f"pause after batch {batch}", seen=promotions)
        with ctx.step(f"remove {ctx.old_group}"):
            platform.router.set_weights({ctx.new_group: 1})
            platform.remove_group(ctx.old_group)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Nothing is left to remove: the old group went in the last batch."""

    def rollback(self, ctx: UpgradeContext) -> None:
        """Route every request to the old group, bring it back to full size, then drain the new one.

        Users leave the new version at once when the old group still has a ready instance (the release
        is what failed; a third less capacity for a second is the lesser harm); otherwise the old group
        is started first (readiness-gated) while both take traffic.
        """
        platform = ctx.instance_groups
        old = next((g for g in platform.groups() if g.name == ctx.old_group), None)
        if old is not None and old.ready > 0:
            with ctx.step(f"every request to {ctx.old_group}"):
                platform.router.set_weights({ctx.old_group: 1})
            ctx.restored(ctx.old_group)
        with ctx.step(f"scale {ctx.old_group} back to {ctx.replicas}"):
            if old is None or old.ready == 0:
                platform.router.set_weights({ctx.old_group: 1, ctx.new_group: 1})
            platform.scale(ctx.old_group, ctx.from_version, ctx.replicas)
        with ctx.step(f"remove {ctx.new_group}"):
            if old is None or old.ready == 0:
                platform.router.set_weights({ctx.old_group: 1})
                ctx.restored(ctx.old_group)
            platform.remove_group(ctx.new_group)
