"""``canary``: send a growing share of user requests to the new version, analysing at every step.

Like Argo Rollouts' and Flagger's canary, and like GitLab.com's own canary stage:

1. the new group starts beside the old one with no user traffic, and the probes analyse it through a
   preview route first (``preview_seconds``), so a release that fails at once hurts no user;
2. the router sends a share of user requests to it, step by step (``steps``): each step sets a
   ``weight`` (percent of requests, the same on every platform: the router's
   :class:`~zdu.platform.SplitsTraffic`, nginx's ``split_clients`` locally, ingress-nginx's
   ``canary-weight`` on Kubernetes) and may ``pause``: for a duration (the probes gate meanwhile) or,
   with an empty pause (``pause = {}``), until a person runs ``zdu promote ID``;
3. anyone with the canary cookie (default ``gitlab_canary=true``, as GitLab.com) or header reaches
   the canary at every step, the preview analysis aside;
4. after the last step every request goes to the new group; the old group stays, out of traffic,
   until ``finalize`` removes it, so a failed ``verify`` is a switch back.

The canary group is scaled to the share it takes (at least one instance, ``ceil(replicas * weight /
100)``), to the full count before it takes everything. A failed gate rolls back: every request to
the old group (one routing change, journaled as ``restored``), then the canary route and group go.
Under the ``sticky-nginx`` layer, a client a canary instance served stays on the canary.
"""

from __future__ import annotations

import math
import re
from typing import Any

import attrs

from zdu.plugins import TRAFFIC_SPLIT, PreflightError, Step, UpgradeContext

__all__ = ["Canary", "CanaryConfig", "CanaryStep", "parse_pause"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_pause(value: object) -> float | None:
    """Seconds of a step's ``pause``: a number of seconds or ``"30s"``/``"2m"``/``"1h"``/``"500ms"``.

    ``{}`` (an empty table) is an indefinite pause, returned as ``math.inf``: the canary waits for
    ``zdu promote``. ``None``: no pause. Raises ValueError naming the value otherwise.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        if value:
            raise ValueError(
                f"pause {value!r}: a table must be empty ({{}}: wait for 'zdu promote'), got keys "
                f"{', '.join(sorted(map(str, value)))}"
            )
        return math.inf
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(
        f"pause {value!r} is not a duration: seconds (30), a string ('30s', '2m', '1h', '500ms') "
        "or {} to wait for 'zdu promote'"
    )


def _check_weight(_instance: object, _attribute: object, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not 0 <= value <= 100):
        raise ValueError(f"weight must be a percent from 0 to 100, got {value!r}")


def _check_pause(_instance: object, _attribute: object, value: Any) -> None:
    parse_pause(value)


@attrs.frozen
class CanaryStep:
    """One step: the share of user requests the canary takes (``weight``), then a ``pause``.

    :ivar weight: percent of user requests (0..100) routed to the canary from this step on; absent:
        unchanged.
    :ivar pause: how long the probes watch before the next step: seconds, a duration string
        (``"2m"``) or ``{}`` (until ``zdu promote``); absent: go on at once (after a gate).
    """

    weight: int | None = attrs.field(default=None, validator=_check_weight)
    pause: Any = attrs.field(default=None, validator=_check_pause)

    @property
    def pause_seconds(self) -> float | None:
        """The pause in seconds (``math.inf``: until promoted), or None."""
        return parse_pause(self.pause)

    def describe(self) -> str:
        """``5% for 2m``, ``25%``, ``pause until promoted``, ..."""
        parts = [] if self.weight is None else [f"{self.weight}% of requests to the canary"]
        seconds = self.pause_seconds
        if seconds == math.inf:
            parts.append("pause until 'zdu promote'")
        elif seconds:
            parts.append(f"pause {seconds:g}s (gating)")
        return ", then ".join(parts) or "gate"


def _check_steps(_instance: object, _attribute: object, steps: tuple[CanaryStep, ...]) -> None:
    if not steps:
        raise ValueError("steps must not be empty")
    for index, step in enumerate(steps):
        if step.weight is None and step.pause is None:
            raise ValueError(f"steps[{index}] has neither weight nor pause")


def _check_cookie(_instance: object, _attribute: object, value: str) -> None:
    name, sep, cookie_value = value.partition("=")
    if value and (not sep or not re.fullmatch(r"[A-Za-z0-9_]+", name) or not cookie_value):
        raise ValueError(f"cookie must be NAME=VALUE (such as 'gitlab_canary=true') or '', got {value!r}")


def _check_header(_instance: object, _attribute: object, value: str) -> None:
    name, sep, header_value = value.partition(":")
    if value and (not sep or not re.fullmatch(r"[A-Za-z0-9-]+", name.strip()) or not header_value.strip()):
        raise ValueError(
            f"header must be 'Name: value' (such as 'X-Gitlab-Canary: true') or '', got {value!r}"
        )


def _default_steps() -> tuple[CanaryStep, ...]:
    return (
        CanaryStep(weight=5, pause="1m"),
        CanaryStep(weight=25, pause="1m"),
        CanaryStep(weight=50, pause="1m"),
        CanaryStep(weight=100),
    )


@attrs.frozen
class CanaryConfig:
    """Options of ``canary``.

    :ivar steps: the shares and pauses, in order (``[{weight = 5, pause = "2m"}, {weight = 25},
        {pause = {}}, {weight = 100}]``); after the last one every request goes to the new version.
    :ivar cookie: ``NAME=VALUE``: requests carrying this cookie always reach the canary (GitLab.com's
        ``gitlab_canary=true``); ``""``: none. On ingress-nginx the cookie's value must be ``always``
        (its ``canary-by-cookie`` rule): only the name is used there.
    :ivar header: ``Name: value``: requests carrying this header always reach the canary; ``""``: none.
    :ivar preview_seconds: how long the probes analyse the canary through a preview route before any
        user request reaches it (0 skips the analysis).
    """

    steps: tuple[CanaryStep, ...] = attrs.field(factory=_default_steps, validator=_check_steps)
    cookie: str = attrs.field(default="gitlab_canary=true", validator=_check_cookie)
    header: str = attrs.field(default="", validator=_check_header)
    preview_seconds: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))


class Canary:
    """Steps of traffic share, analysed at each; rolled back on a failed gate."""

    def __init__(self, config: CanaryConfig) -> None:
        self.config = config

    @property
    def _cookie(self) -> str | None:
        return self.config.cookie or None

    @property
    def _header(self) -> str | None:
        return self.config.header or None

    def _instances(self, ctx: UpgradeContext, weight: int) -> int:
        """Canary instances for ``weight`` percent: its share of the fleet, at least one."""
        return max(1, math.ceil(ctx.replicas * weight / 100))

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Start, analyse through the preview route, the steps, everything, remove the old group."""
        if not ctx.provides(TRAFFIC_SPLIT):  # in preflight, before anything changes
            raise PreflightError(
                f"strategy canary: the router of platform {ctx.target.platform!r} cannot send a share of "
                f"requests to one group (capability {TRAFFIC_SPLIT!r})"
            )
        opt_in = " or ".join(x for x in (self.config.cookie, self.config.header) if x) or "nothing"
        steps = [
            Step(
                "rollout", "start", f"{ctx.new_group}: 1 instance of {ctx.release.version}, no user traffic"
            ),
        ]
        if self.config.preview_seconds > 0:
            steps.append(
                Step(
                    "rollout",
                    "analyse",
                    f"probes against the preview route for {self.config.preview_seconds:g}s",
                )
            )
        steps += [
            Step("rollout", f"step {index + 1}", f"{step.describe()}; opt-in: {opt_in}")
            for index, step in enumerate(self.config.steps)
        ]
        steps += [
            Step("rollout", "promote", f"{ctx.new_group} to {ctx.replicas} instances, every request to it"),
            Step("finalize", "remove", ctx.old_group),
        ]
        return steps

    def rollout(self, ctx: UpgradeContext) -> None:
        """Start the canary out of traffic, analyse it, walk the steps, then send it everything."""
        router = ctx.instance_groups.router
        split = ctx.traffic_split
        platform = ctx.instance_groups
        if router.weights().get(ctx.old_group, 0) > 0:
            with ctx.step(f"start {ctx.new_group} (canary, no user traffic)"):
                # only the old group takes traffic; its weight is kept (no routing change, no reload)
                router.set_weights({ctx.old_group: router.weights().get(ctx.old_group) or 1})
                platform.scale(ctx.new_group, ctx.release.version, 1)
            ctx.gate(f"{ctx.new_group} started")
            if self.config.preview_seconds > 0:
                with ctx.step(f"analyse {ctx.new_group} through the preview route before any user"):
                    url = ctx.preview_route.set_preview(ctx.new_group)
                    try:
                        if url is not None:
                            ctx.analyse(url, self.config.preview_seconds, f"preview of {ctx.new_group}")
                    finally:
                        ctx.preview_route.set_preview(None)
            promotions = ctx.promotions()
            instances = 1
            for index, step in enumerate(self.config.steps):
                name = f"canary step {index + 1}"
                if (by := ctx.promoted(full=True)) is not None:  # 'zdu promote --full': straight to 100%
                    ctx.event("steps-skipped", f"{name} and after skipped: fully promoted by {by}", by=by)
                    break
                if step.weight is not None:
                    wanted = self._instances(ctx, step.weight)
                    if wanted > instances:
                        with ctx.step(f"scale {ctx.new_group} to {wanted}"):
                            platform.scale(ctx.new_group, ctx.release.version, wanted)
                        instances = wanted
                    with ctx.step(
                        f"{name}: {step.weight}% of requests to {ctx.new_group}", weight=step.weight
                    ):
                        split.set_canary(ctx.new_group, step.weight, self._cookie, self._header)
                    ctx.gate(f"{name} ({step.weight}%)")
                seconds = step.pause_seconds
                if seconds == math.inf:
                    promotions = ctx.wait_for_promotion(name, seen=promotions)
                elif seconds:
                    with ctx.step(f"{name}: watch for {seconds:g}s"):
                        ctx.wait(seconds, name)
        with ctx.step(f"scale {ctx.new_group} to {ctx.replicas}"):
            platform.scale(ctx.new_group, ctx.release.version, ctx.replicas)
        with ctx.step(f"every request to {ctx.new_group}"):
            router.set_weights({ctx.new_group: 1})
            split.set_canary(None)
        ctx.gate(f"promoted {ctx.new_group}")

    def finalize(self, ctx: UpgradeContext) -> None:
        """Remove the old group (out of traffic since the promotion)."""
        if ctx.old_group in {g.name for g in ctx.instance_groups.groups()}:
            with ctx.step(f"remove {ctx.old_group}"):
                ctx.instance_groups.remove_group(ctx.old_group)

    def rollback(self, ctx: UpgradeContext) -> None:
        """Every request to the old group (full size first), then remove the canary route and group.

        A canary route in force is first set to 0% without opt-ins (one change on every platform: the
        local router drops the split, ingress-nginx's canary weight goes to 0), which is when users
        are back on the old version (journaled ``restored``); the route and the group go after.
        """
        router = ctx.instance_groups.router
        ctx.preview_route.set_preview(None)
        old = next((g for g in ctx.instance_groups.groups() if g.name == ctx.old_group), None)
        if old is None or old.ready < ctx.replicas:
            with ctx.step(f"start {ctx.old_group} again", replicas=ctx.replicas):
                ctx.instance_groups.scale(ctx.old_group, ctx.from_version, ctx.replicas)
        split = ctx.traffic_split if ctx.provides(TRAFFIC_SPLIT) else None
        route = split.canary() if split is not None else None
        if split is not None and route is not None:
            with ctx.step(f"no request to the canary {route.group}"):
                split.set_canary(route.group, 0)
            ctx.restored(ctx.old_group)
        with ctx.step(f"every request to {ctx.old_group}"):
            router.set_weights({ctx.old_group: 1})
        if route is None:
            ctx.restored(ctx.old_group)
        if split is not None:
            with ctx.step("remove the canary route"):
                split.set_canary(None)
        with ctx.step(f"remove {ctx.new_group}"):
            ctx.instance_groups.remove_group(ctx.new_group)
