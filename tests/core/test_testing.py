"""zdu.testing's in-memory platform and interruption helpers, on the first-party strategies.

The helpers must be able to fail: a strategy that cannot resume from where a kill left it is caught.
"""

from __future__ import annotations

from typing import Any

import pytest

from zdu.context import UpgradeContext
from zdu.errors import ReadinessTimeout, TargetBusy
from zdu.model import Version
from zdu.platform import INSTANCE_GROUPS
from zdu.strategy import Step, Strategy
from zdu.testing import (
    MemoryPlatform,
    check_every_interruption,
    interrupt_rollout,
    make_context,
    restricted,
    rollout,
)
from zdu_strategies.blue_green import BlueGreen, BlueGreenConfig
from zdu_strategies.canary import Canary, CanaryConfig, CanaryStep
from zdu_strategies.recreate import Recreate, RecreateConfig
from zdu_strategies.rolling import Rolling, RollingConfig

RELEASE = "16.6.0"
STRATEGIES: dict[str, Strategy] = {
    "rolling": Rolling(RollingConfig()),
    "rolling surge 2": Rolling(RollingConfig(max_surge=2, max_unavailable=1)),
    "blue-green": BlueGreen(BlueGreenConfig(scale_down_delay=0.0, preview_seconds=0.0)),
    "canary": Canary(
        CanaryConfig(steps=(CanaryStep(weight=25), CanaryStep(weight=100)), preview_seconds=0.0)
    ),
    "recreate": Recreate(RecreateConfig()),
}


def one_group_at_a_time() -> Any:
    """A platform with instance groups that cannot scale two at once: rolling takes its other path."""
    return restricted(MemoryPlatform(), {INSTANCE_GROUPS})


@pytest.mark.parametrize("name", [*sorted(STRATEGIES), "rolling, one group at a time"])
@pytest.mark.parametrize("how", ["resume", "rollback"])
def test_first_party_strategies_resume_or_roll_back_from_every_interruption(name: str, how: str) -> None:
    strategy, platform = STRATEGIES.get(name, STRATEGIES["rolling"]), MemoryPlatform
    if name.endswith("one group at a time"):
        platform = one_group_at_a_time
    outcomes = check_every_interruption(strategy, platform, RELEASE, rollback=how == "rollback")

    assert outcomes and {o.after for o in outcomes} == {False, True}
    expected = Version.parse(RELEASE if how == "resume" else "16.5.0")
    assert all(o.serving == (expected,) for o in outcomes)


class ForgetfulRolling:
    """A rolling strategy that only knows how to start from the beginning: resuming it leaves two versions."""

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        return []

    def rollout(self, ctx: UpgradeContext) -> None:
        if any(g.name == ctx.new_group for g in ctx.platform.groups()):
            return  # "already done", it thinks
        ctx.platform.router.set_weights({ctx.old_group: 1, ctx.new_group: 1})
        for count in range(1, ctx.replicas + 1):
            with ctx.step(f"scale {ctx.new_group} to {count}"):
                ctx.platform.scale(ctx.new_group, ctx.release.version, count)
            with ctx.step(f"scale {ctx.old_group} to {ctx.replicas - count}"):
                ctx.platform.scale(ctx.old_group, ctx.from_version, ctx.replicas - count)
        with ctx.step("remove old"):
            ctx.platform.router.set_weights({ctx.new_group: 1})
            ctx.platform.remove_group(ctx.old_group)

    def finalize(self, ctx: UpgradeContext) -> None:
        pass

    def rollback(self, ctx: UpgradeContext) -> None:
        pass


def test_a_strategy_that_cannot_resume_is_caught() -> None:
    strategy = ForgetfulRolling()
    platform = MemoryPlatform()
    rollout(strategy, make_context(platform, RELEASE))
    assert platform.serving_versions() == [Version.parse(RELEASE)]  # uninterrupted, it works

    with pytest.raises(AssertionError, match=r"interrupted (at|after) step \d+ .*serve, not only 16.6.0"):
        check_every_interruption(strategy, MemoryPlatform, RELEASE)


def test_interrupt_rollout_stops_at_the_step_and_journals_its_intent() -> None:
    platform = MemoryPlatform(replicas=2)
    ctx = make_context(platform, RELEASE)

    action = interrupt_rollout(STRATEGIES["rolling"], ctx, 1)

    assert action == "scale v16-5-0 to 1 while v16-6-0 goes to 2"  # the platform scales together
    kinds = [(kind, message) for kind, message, _ in ctx.record_event.events]  # type: ignore[attr-defined]
    assert kinds[-1] == ("step-started", action)  # the intent is recorded, the step never ran
    assert {g.name: g.replicas for g in platform.groups()} == {"v16-5-0": 2, "v16-6-0": 1}
    with pytest.raises(ValueError, match="only 5 steps"):
        interrupt_rollout(STRATEGIES["rolling"], make_context(MemoryPlatform(replicas=2), RELEASE), 5)


def test_memory_platform_fails_like_a_platform() -> None:
    platform = MemoryPlatform(fail_versions=[RELEASE])
    with pytest.raises(ReadinessTimeout):
        platform.scale("v16-6-0", Version.parse(RELEASE), 1)
    platform.kill("v16-5-0")
    assert platform.check_health() == ["instance v16-5-0-1 died"]
    with platform.hold_lock("first"), pytest.raises(TargetBusy, match="first"):
        platform.hold_lock("second").__enter__()
