"""The MigrationRunner interface: schema migrations in two stages.

GitLab splits migrations in two. **pre** (regular, ``db/migrate``) are additive and run before any new
code serves; old code keeps working with them. **post** (post-deployment, ``db/post_migrate``) remove
things and run only once no old instance serves traffic: they are the point of no return.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from zdu.model import Target

if TYPE_CHECKING:
    from zdu.context import UpgradeContext
    from zdu.platform import Platform

__all__ = ["MigrationEnv", "MigrationRunner", "Stage"]


class Stage(enum.Enum):
    """A migration stage."""

    PRE = "pre"
    POST = "post"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class MigrationEnv:
    """What a migration runner factory is given besides its own configuration."""

    target: Target
    platform: Platform
    state_dir: Path


@runtime_checkable
class MigrationRunner(Protocol):
    """Runs schema migrations for the ``pre`` and ``post`` stages."""

    def pending(self, stage: Stage) -> list[str]:
        """The migrations ``run(stage)`` would apply now, in order (for ``zdu plan``). Reads only."""
        ...

    def run(self, stage: Stage, ctx: UpgradeContext) -> list[str]:
        """Apply the pending migrations of ``stage``; return what was applied. Idempotent."""
        ...

    def reversible(self, stage: Stage) -> bool:
        """Whether what ``run(stage)`` did can be undone by a rollback."""
        ...
