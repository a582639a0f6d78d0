"""The Strategy and TrafficLayer interfaces: how new code replaces old, and how traffic is kept whole.

A rollout **Strategy** (``recreate``, ``rolling``, ``blue-green``, ...) moves the fleet from the old
version to the new one over the :class:`~zdu.platform.Platform`. A **TrafficLayer** (``sticky-nginx``,
``assets-shim``) changes how the Router sends traffic while versions are mixed; any number of layers
combine with one strategy.

Every method is called by the orchestrator (:mod:`zdu.upgrade`) with the upgrade's
:class:`~zdu.context.UpgradeContext`, and must be idempotent: it reads the platform's state and does
only what is left, so that an interrupted upgrade can be run again from where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from zdu.context import UpgradeContext

__all__ = ["Step", "Strategy", "TrafficLayer"]


@attrs.frozen
class Step:
    """One step of a plan, for ``zdu plan``: the phase it belongs to and what it will do."""

    phase: str
    action: str
    detail: str = ""


@runtime_checkable
class Strategy(Protocol):
    """How new code replaces old."""

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """The steps ``rollout`` and ``finalize`` would take from the platform's current state.

        Called by ``zdu plan`` and in ``preflight``. Reads only; changes nothing.
        """
        ...

    def rollout(self, ctx: UpgradeContext) -> None:
        """Phase ``rollout``: bring the new version into service and the old one out of it.

        Call ``ctx.gate(step)`` after every step that changes what serves traffic, so the probes can
        stop a bad release early. Raise on failure; the orchestrator then calls :meth:`rollback`.
        """
        ...

    def finalize(self, ctx: UpgradeContext) -> None:
        """Phase ``finalize``: after ``verify``; remove what rollback needed (``blue-green``'s old set)."""
        ...

    def rollback(self, ctx: UpgradeContext) -> None:
        """Bring the old version back into service and remove the new one, from whatever state.

        Called when a gate fails or a step raises before ``migrate(post)``. Must keep the old version
        serving throughout, and succeed whether ``rollout`` got far or not at all.
        """
        ...


@runtime_checkable
class TrafficLayer(Protocol):
    """A change to routing that holds while two versions serve (affinity, an assets route)."""

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """The steps ``prepare`` and ``finalize`` would take. Reads only."""
        ...

    def prepare(self, ctx: UpgradeContext) -> None:
        """Phase ``prepare``: switch the layer on, before any new instance takes traffic."""
        ...

    def finalize(self, ctx: UpgradeContext) -> None:
        """Phase ``finalize``: switch the layer off once only the new version serves.

        What must outlive ``finalize`` for a rollback to still work (the assets shim's route) may stay
        until ``cleanup``, which removes every managed route.
        """
        ...

    def rollback(self, ctx: UpgradeContext) -> None:
        """Switch the layer off after the strategy's rollback has put the old version back."""
        ...
