"""The MigrationRunner interface: schema migrations in two stages.

GitLab splits migrations in two. **pre** (regular, ``db/migrate``) are additive and run before any new
code serves; old code keeps working with them. **post** (post-deployment, ``db/post_migrate``) remove
things and run only once no old instance serves traffic: they are the point of no return.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from zdu.errors import ZduError
from zdu.model import Target

if TYPE_CHECKING:
    from zdu.context import UpgradeContext
    from zdu.platform import Platform

__all__ = [
    "CommandError",
    "CommandExecutor",
    "CommandResult",
    "CommandTimeout",
    "MigrationEnv",
    "MigrationError",
    "MigrationRunner",
    "Stage",
]


class MigrationError(ZduError):
    """A migration failed, or its database could not be reached or locked.

    The message names the migration (its file or its id) and the cause, never a secret: a database
    password is replaced by ``***`` before it could reach a message.
    """


class CommandError(ZduError):
    """A command could not be started, or did not finish in time (:class:`CommandTimeout`)."""


class CommandTimeout(CommandError):
    """A command ran longer than its timeout and was stopped.

    :ivar output: what it printed before it was stopped.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class Stage(enum.Enum):
    """A migration stage."""

    PRE = "pre"
    POST = "post"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class MigrationEnv:
    """What a migration runner factory is given besides its own configuration.

    :ivar target: the deployment whose database is migrated.
    :ivar platform: the target's platform (a runner may ask it for a :class:`CommandExecutor`).
    :ivar state_dir: a directory the runner may keep state in (per target).
    :ivar config_dir: the directory of the configuration file, which relative paths in the runner's
        options are relative to; ``None`` when the configuration was built in code (relative paths are
        then relative to the current directory).
    """

    target: Target
    platform: Platform
    state_dir: Path
    config_dir: Path | None = None

    def resolve(self, path: Path) -> Path:
        """``path`` made absolute: relative to :attr:`config_dir`, else to the current directory."""
        path = path.expanduser()
        if path.is_absolute():
            return path
        return ((self.config_dir or Path.cwd()) / path).resolve()


@attrs.frozen
class CommandResult:
    """How a command ended.

    :ivar returncode: its exit status (0: success).
    :ivar output: what it printed, standard output and standard error interleaved.
    """

    returncode: int
    output: str


@runtime_checkable
class CommandExecutor(Protocol):
    """Runs a command where the target's migrations must run: this machine, a deploy node, a toolbox pod.

    Runners such as ``gitlab-rake`` use the platform's executor (``Platform.command_executor``) and
    fall back to running the command on this machine when the platform offers none.
    """

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str | None],
        timeout: float,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run ``argv`` (no shell) to its end and return its exit status and output.

        :param argv: the program and its arguments.
        :param env: changes to the environment the command would otherwise get: a string sets a
            variable, ``None`` removes it (``SKIP_POST_DEPLOYMENT_MIGRATIONS`` must be *absent* for
            GitLab to run post-deployment migrations: any value, even ``false``, skips them).
        :param timeout: seconds the command may run; after that it is stopped (with its children) and
            :class:`CommandTimeout` is raised.
        :param on_output: called with each line of output (without its line ending) as it arrives, in
            the caller's thread, so that callers can stream it into logs and the journal.
        :raises CommandError: the command could not be started.
        :raises CommandTimeout: the command ran longer than ``timeout``.
        """
        ...


@runtime_checkable
class MigrationRunner(Protocol):
    """Runs schema migrations for the ``pre`` and ``post`` stages."""

    def pending(self, stage: Stage) -> list[str]:
        """The migrations ``run(stage)`` would apply now, in order (for ``zdu plan``). Reads only."""
        ...

    def run(self, stage: Stage, ctx: UpgradeContext) -> list[str]:
        """Apply the pending migrations of ``stage``; return what was applied. Idempotent.

        Called in phase ``migrate(pre)`` with :attr:`Stage.PRE` and ``migrate(post)`` with
        :attr:`Stage.POST`; records each migration through ``ctx.step`` before and after it runs.
        Raises :class:`MigrationError` naming the migration that failed and why.
        """
        ...

    def reversible(self, stage: Stage) -> bool:
        """Whether what ``run(stage)`` did can be undone by a rollback."""
        ...
