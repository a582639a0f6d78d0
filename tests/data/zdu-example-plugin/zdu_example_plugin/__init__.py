"""An example zdu plugin: the ``surge-all`` rollout strategy and a phase-log observer.

``surge-all`` starts a full set of the new version beside the old one, lets both serve, then routes
only the new set and drains and removes the old one. It needs twice the capacity for a while, and
gets the upgrade done in one step.

It is written against zdu's public plugin API only: :mod:`zdu.plugins` (the hook marker, the
registration records, :class:`~zdu.plugins.Step`, :class:`~zdu.plugins.UpgradeContext` and the capability
names). It requires the capability ``instance-groups`` (declared in its registration record) and
reaches it through ``ctx.instance_groups``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from zdu.plugins import INSTANCE_GROUPS, Step, StrategyPlugin, UpgradeContext, hookimpl

__all__ = ["PHASE_LOG_ENV", "SurgeAll", "SurgeAllConfig"]

#: Environment variable: a file the observer appends every finished phase's name to.
PHASE_LOG_ENV = "ZDU_EXAMPLE_PHASE_LOG"


@attrs.frozen
class SurgeAllConfig:
    """Options of ``surge-all`` (the ``[strategy]`` table of the configuration, besides ``name``).

    :ivar settle_seconds: how long both versions serve side by side, gated by the probes, before the
        old one leaves the router.
    """

    settle_seconds: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))


class SurgeAll:
    """Start a full new set beside the old one, then switch to it and remove the old one.

    Every method reads the platform's state and does only what is left, so an interrupted upgrade
    can run it again.
    """

    def __init__(self, config: SurgeAllConfig) -> None:
        self.config = config

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """The steps :meth:`rollout` takes. Reads only."""
        steps = [
            Step("rollout", "start", f"{ctx.new_group}: {ctx.replicas} instances of {ctx.release.version}"),
            Step("rollout", "route", f"{ctx.old_group} and {ctx.new_group} together"),
        ]
        if self.config.settle_seconds > 0:
            steps.append(Step("rollout", "settle", f"{self.config.settle_seconds:g}s with both serving"))
        steps += [
            Step("rollout", "switch", f"route only {ctx.new_group}"),
            Step("rollout", "remove", f"drain and stop {ctx.old_group}"),
        ]
        return steps

    def rollout(self, ctx: UpgradeContext) -> None:
        """Phase ``rollout``: surge, gate, switch, gate, remove the old set."""
        platform = ctx.instance_groups
        router = platform.router
        if router.weights().get(ctx.old_group, 0) > 0:  # not switched yet: (re)do the surge
            with ctx.step(f"start {ctx.new_group} beside {ctx.old_group}", replicas=ctx.replicas):
                router.set_weights({ctx.old_group: 1, ctx.new_group: 1})
                platform.scale(ctx.new_group, ctx.release.version, ctx.replicas)
            ctx.gate(f"{ctx.new_group} started")
            if self.config.settle_seconds > 0:
                ctx.wait(self.config.settle_seconds, f"{ctx.old_group} and {ctx.new_group} serving")
            with ctx.step(f"route only {ctx.new_group}"):
                router.set_weights({ctx.new_group: 1})
            ctx.gate(f"switched to {ctx.new_group}")
        with ctx.step(f"remove {ctx.old_group}"):
            platform.remove_group(ctx.old_group)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Phase ``finalize``: nothing is left, the old set went at the end of the rollout."""

    def rollback(self, ctx: UpgradeContext) -> None:
        """Bring the old set back to full size, route only it, then remove the new set."""
        platform = ctx.instance_groups
        with ctx.step(f"scale {ctx.old_group} back to {ctx.replicas}"):
            platform.scale(ctx.old_group, ctx.from_version, ctx.replicas)
        with ctx.step(f"route only {ctx.old_group}"):
            platform.router.set_weights({ctx.old_group: 1})
        with ctx.step(f"remove {ctx.new_group}"):
            platform.remove_group(ctx.new_group)


@hookimpl
def zdu_strategies() -> Iterator[StrategyPlugin[Any]]:
    """Register ``surge-all``."""
    yield StrategyPlugin(
        name="surge-all",
        summary="start a full new set beside the old one, then switch to it and remove the old one",
        config=SurgeAllConfig,
        factory=SurgeAll,
        requires={INSTANCE_GROUPS},
    )


@hookimpl
def zdu_phase_finished(phase: str) -> None:
    """Append the phase's name to the file named by ``ZDU_EXAMPLE_PHASE_LOG``, when it is set.

    A hook implementation takes only the arguments it needs, here ``phase`` of four.
    """
    path = os.environ.get(PHASE_LOG_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as log:
            log.write(f"{phase}\n")
