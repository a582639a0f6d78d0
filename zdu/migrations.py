"""The MigrationRunner interface: schema migrations in two stages.

GitLab splits migrations in two. **pre** (regular, ``db/migrate``) are additive and run before any new
code serves; old code keeps working with them. **post** (post-deployment, ``db/post_migrate``) remove
things and run only once no old instance serves traffic: they are the point of no return.

Besides the two stages, GitLab runs **batched background migrations**: data migrations that Sidekiq
works through batch by batch after an upgrade, and that must be finished before the next upgrade (an
upgrade path with unfinished ones breaks: a later migration expects them ``finished``). A runner that
can see them offers :class:`BackgroundMigrationSource`; the orchestrator then refuses to start an
upgrade while one is unfinished (:func:`check_background_migrations`, in preflight), and, when
configured, waits for those the upgrade queued before it calls the upgrade finished
(:func:`wait_for_background_migrations`, at the end of ``migrate(post)``).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

import attrs

from zdu.errors import PreflightError, ZduError
from zdu.model import Event, Target
from zdu.platform import COMMAND_HOST, OMNIBUS_NODES, platform_provides, require_capability

if TYPE_CHECKING:
    from zdu.context import UpgradeContext
    from zdu.platform import CommandHost, OmnibusNodes, Platform

__all__ = [
    "FINISHED_STATUSES",
    "BackgroundMigration",
    "BackgroundMigrationSource",
    "CommandError",
    "CommandExecutor",
    "CommandResult",
    "CommandTimeout",
    "MigrationEnv",
    "MigrationError",
    "MigrationRunner",
    "MigrationTiming",
    "Stage",
    "check_background_migrations",
    "migration_timings",
    "wait_for_background_migrations",
]

#: GitLab's statuses of a batched background migration that count as done (the others: ``paused``,
#: ``active``, ``failed``, ``finalizing``).
FINISHED_STATUSES = frozenset({"finished", "finalized"})


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
    :ivar platform: the target's platform: its base (:class:`~zdu.platform.Platform`); reach a
        capability through :meth:`provides`, :attr:`command_host`, :attr:`omnibus_nodes`.
    :ivar state_dir: a directory the runner may keep state in (per target).
    :ivar config_dir: the directory of the configuration file, which relative paths in the runner's
        options are relative to; ``None`` when the configuration was built in code (relative paths are
        then relative to the current directory).
    """

    target: Target
    platform: Platform
    state_dir: Path
    config_dir: Path | None = None

    def provides(self, capability: str) -> bool:
        """Whether the platform provides ``capability`` (a name such as ``"command-host"``)."""
        return capability in platform_provides(self.platform)

    @property
    def command_host(self) -> CommandHost:
        """The platform as ``command-host``; raises :class:`~zdu.errors.UsageError` without it.

        A runner that can also run its commands on this machine asks :meth:`provides` first.
        """
        require_capability(self.platform, COMMAND_HOST, "the migration runner")
        return cast("CommandHost", self.platform)

    @property
    def omnibus_nodes(self) -> OmnibusNodes:
        """The platform as ``omnibus-nodes``; raises :class:`~zdu.errors.UsageError` without it."""
        require_capability(self.platform, OMNIBUS_NODES, "the migration runner")
        return cast("OmnibusNodes", self.platform)

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

    Runners such as ``gitlab-rake`` use the platform's executor (capability ``command-host``:
    :attr:`MigrationEnv.command_host`) and fall back to running the command on this machine when the
    platform offers none.
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


@attrs.frozen
class BackgroundMigration:
    """One batched background migration, as GitLab's ``batched_background_migrations`` table has it.

    :ivar job_class_name: the job that migrates each batch (``BackfillProjectsPath``).
    :ivar table_name: the table it walks through.
    :ivar column_name: the column it batches by.
    :ivar status: GitLab's status name: ``paused``, ``active``, ``finished``, ``failed``,
        ``finalizing`` or ``finalized``.
    :ivar database: the database it belongs to when there are several (``main``, ``ci``), else ``""``.
    :ivar progress: the share of the batches done (0 to 1), when the runner can tell.
    """

    job_class_name: str
    table_name: str = ""
    column_name: str = ""
    status: str = "active"
    database: str = ""
    progress: float | None = None

    @property
    def finished(self) -> bool:
        """Whether GitLab counts it as done (``finished`` or ``finalized``)."""
        return self.status in FINISHED_STATUSES

    @property
    def name(self) -> str:
        """``[database: ]JobClass on table.column``: how errors and events name it."""
        where = ".".join(part for part in (self.table_name, self.column_name) if part)
        prefix = f"{self.database}: " if self.database else ""
        return f"{prefix}{self.job_class_name}" + (f" on {where}" if where else "")

    def describe(self) -> str:
        """The name, status and progress: ``BackfillProjectsPath on projects.id (active, 40%)``."""
        progress = "" if self.progress is None else f", {self.progress:.0%}"
        return f"{self.name} ({self.status}{progress})"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (for the journal)."""
        return attrs.asdict(self)


@runtime_checkable
class BackgroundMigrationSource(Protocol):
    """A migration runner that can tell the target's batched background migrations (a capability).

    ``sql`` reads the ``batched_background_migrations`` table; ``gitlab-rake`` asks GitLab
    (``gitlab:background_migrations:status``).
    """

    def background_migrations(self) -> list[BackgroundMigration]:
        """The batched background migrations that are not finished, in the order GitLab lists them.

        Reads only. An empty list when there are none, or when the database has no such table yet.
        Raises :class:`MigrationError` when they cannot be read.
        """
        ...


def check_background_migrations(runner: object) -> None:
    """Refuse an upgrade while the runner reports unfinished batched background migrations.

    Called in preflight (and by ``zdu plan``), before anything is recorded or changed. A runner
    without the :class:`BackgroundMigrationSource` capability is not checked.

    :raises PreflightError: naming every unfinished migration (exit code 2 at the command line).
    :raises MigrationError: they could not be read.
    """
    if not isinstance(runner, BackgroundMigrationSource):
        return
    unfinished = [m for m in runner.background_migrations() if not m.finished]
    if unfinished:
        raise PreflightError(
            f"the target has {len(unfinished)} unfinished batched background migration"
            f"{'s' if len(unfinished) != 1 else ''}: {'; '.join(m.describe() for m in unfinished)}; "
            "GitLab requires them finished before the next upgrade: let them finish (Sidekiq runs them) "
            "or finalize them, then start the upgrade again"
        )


def wait_for_background_migrations(
    runner: object, ctx: UpgradeContext, *, timeout: float, interval: float = 5.0
) -> None:
    """Wait until the runner reports no unfinished batched background migration.

    Called at the end of ``migrate(post)`` when ``migrations.wait_for_background_migrations`` is set,
    so that an upgrade is called finished only once the data migrations it queued are done. Records
    a ``background-migrations`` event whenever what is left (or its progress) changes, and one when
    none is left; between two looks it keeps gating the probes (:meth:`UpgradeContext.wait`). In a
    dry run, or with a runner that cannot tell, it returns at once.

    :raises MigrationError: one of them failed (GitLab stops a failed one: a person must look), or
        some are still unfinished after ``timeout`` seconds (the error names them and their progress).
    """
    if ctx.dry_run or not isinstance(runner, BackgroundMigrationSource):
        return
    started = time.monotonic()
    deadline = started + timeout
    last: list[str] | None = None
    while True:
        unfinished = [m for m in runner.background_migrations() if not m.finished]
        described = [m.describe() for m in unfinished]
        waited = round(time.monotonic() - started, 3)
        if not unfinished:
            ctx.event(
                "background-migrations",
                f"no batched background migration left unfinished (waited {waited:.1f}s)",
                unfinished=[],
                waited_s=waited,
            )
            return
        if described != last:
            ctx.event(
                "background-migrations",
                f"waiting for {len(unfinished)} batched background migrations: {'; '.join(described)}",
                unfinished=[m.to_dict() for m in unfinished],
                waited_s=waited,
            )
            last = described
        failed = [m for m in unfinished if m.status == "failed"]
        if failed:
            raise MigrationError(
                f"batched background migrations failed: {'; '.join(m.describe() for m in failed)}; "
                "retry or finalize them (gitlab-rake gitlab:background_migrations:finalize) and check why"
            )
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"batched background migrations still unfinished after {timeout:g}s: {'; '.join(described)}"
            )
        ctx.wait(min(interval, max(0.0, deadline - time.monotonic())), "waiting for background migrations")


@attrs.frozen
class MigrationTiming:
    """How long one migration took, as its ``migration-timing`` event recorded it.

    :ivar stage: ``pre`` or ``post``.
    :ivar migration: ``<version>_<name>``.
    :ivar duration_s: seconds from its start to its end, waits included.
    :ivar attempts: how many attempts it took (more than one only with lock retries).
    :ivar lock_wait_s: seconds lost to attempts that gave up on a lock and to the waits between them.
    """

    stage: str
    migration: str
    duration_s: float
    attempts: int = 1
    lock_wait_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        return attrs.asdict(self)


def migration_timings(events: Iterable[Event]) -> list[MigrationTiming]:
    """The timings of the migrations an upgrade applied, from its ``migration-timing`` events."""
    return [
        MigrationTiming(
            stage=str(event.data.get("stage", "")),
            migration=str(event.data.get("migration", "")),
            duration_s=float(event.data.get("duration_s", 0.0)),
            attempts=int(event.data.get("attempts", 1)),
            lock_wait_s=float(event.data.get("lock_wait_s", 0.0)),
        )
        for event in events
        if event.kind == "migration-timing"
    ]
