"""The ``gitlab-rake`` migration runner: GitLab's own ``db:migrate``, run where the platform says.

Configuration (``[migrations]``)::

    [migrations]
    name = "gitlab-rake"
    command = ["gitlab-rake", "db:migrate"]                   # the default
    status_command = ["gitlab-rake", "db:migrate:status"]     # the default; [] when there is none
    background_status_command = ["gitlab-rake", "gitlab:background_migrations:status"]  # or []
    timeout = 3600                                            # seconds per command
    env = { RAILS_ENV = "production" }                        # added to the commands' environment

``pre`` runs ``command`` with ``SKIP_POST_DEPLOYMENT_MIGRATIONS=true``; ``post`` runs it with that
variable removed from the environment (GitLab tests its presence: even ``false`` would skip the
post-deployment migrations). ``pending(stage)`` reads ``status_command``'s ``down`` lines: run with
the variable set, it lists the regular migrations only; without it, regular and post-deployment ones.

The commands run through the platform's executor (capability ``command-host``: a deploy node, a
toolbox pod, a Job) when it provides one, else on this machine (:class:`LocalCommandExecutor`).
``background_migrations()`` runs ``background_status_command`` and reads its lines, ``STATUS |
JobClass,table,column,[arguments]`` under ``Database: NAME`` headings (GitLab's
``gitlab:background_migrations:status``); the orchestrator uses it to refuse an upgrade while one is
unfinished, and to wait for them after ``migrate(post)`` when configured.

Their output is streamed into the log and the journal, line by line. ``env`` is recorded in the
journal with the rest of the configuration: secrets belong in the environment of the node or pod.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from zdu.plugins import (
    COMMAND_HOST,
    BackgroundMigration,
    CommandError,
    CommandExecutor,
    CommandResult,
    LocalCommandExecutor,
    MigrationEnv,
    MigrationError,
    Stage,
)

if TYPE_CHECKING:
    from zdu.plugins import UpgradeContext

__all__ = [
    "SKIP_POST_DEPLOYMENT_MIGRATIONS",
    "GitLabRakeConfig",
    "GitLabRakeRunner",
    "parse_background_status",
    "parse_status",
]

log = logging.getLogger("zdu_migrations.gitlab_rake")

#: The variable that makes ``db:migrate`` leave post-deployment migrations out.
SKIP_POST_DEPLOYMENT_MIGRATIONS = "SKIP_POST_DEPLOYMENT_MIGRATIONS"

_STATUS_LINE = re.compile(r"^\s*(?P<status>up|down)\s+(?P<version>[0-9]+)\s+(?P<name>.*?)\s*$")
_DATABASE_LINE = re.compile(r"^\s*database:\s*(?P<database>\S+)\s*$", re.IGNORECASE)
_BACKGROUND_LINE = re.compile(r"^\s*(?P<status>[a-z_]+)\s*\|\s*(?P<fields>\S.*?)\s*$")
_OUTPUT_TAIL = 20


def _command(_instance: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    if attribute.name == "command" and not value:
        raise ValueError(f"{attribute.name} must name a program, got {value!r}")


def _positive(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _no_skip_variable(
    _instance: Any, attribute: attrs.Attribute[dict[str, str]], value: dict[str, str]
) -> None:
    if SKIP_POST_DEPLOYMENT_MIGRATIONS in value:
        raise ValueError(
            f"{attribute.name} must not set {SKIP_POST_DEPLOYMENT_MIGRATIONS}: the runner sets it for the "
            "pre stage and removes it for the post stage"
        )


@attrs.frozen
class GitLabRakeConfig:
    """Options of the ``gitlab-rake`` runner.

    :ivar command: the migration command (no shell), run once per stage.
    :ivar status_command: the command whose ``up``/``down`` lines tell what is pending (``rake
        db:migrate:status``); an empty list when there is none: ``pending()`` then lists nothing and
        ``run()`` always runs ``command``.
    :ivar background_status_command: the command that lists batched background migrations with their
        status (``gitlab-rake gitlab:background_migrations:status``); an empty list when there is none:
        they are then neither checked nor waited for.
    :ivar timeout: seconds each command may run before it is stopped and the stage fails.
    :ivar env: variables added to the commands' environment (not for secrets: the journal records them).
    """

    command: list[str] = attrs.field(factory=lambda: ["gitlab-rake", "db:migrate"], validator=_command)
    status_command: list[str] = attrs.field(
        factory=lambda: ["gitlab-rake", "db:migrate:status"], validator=_command
    )
    background_status_command: list[str] = attrs.field(
        factory=lambda: ["gitlab-rake", "gitlab:background_migrations:status"], validator=_command
    )
    timeout: float = attrs.field(default=3600.0, validator=_positive)
    env: dict[str, str] = attrs.field(factory=dict, validator=_no_skip_variable)


def parse_status(output: str) -> list[str]:
    """The ``down`` migrations in the output of ``rake db:migrate:status``, in the order listed.

    Each is ``"<version> <name>"``; when the output covers several databases (GitLab's ``main`` and
    ``ci``), each is prefixed by its database: ``"ci: <version> <name>"``.
    """
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in output.splitlines():
        database = _DATABASE_LINE.match(line)
        if database:
            sections.append((database["database"], []))
            continue
        match = _STATUS_LINE.match(line)
        if match and match["status"] == "down":
            sections[-1][1].append(f"{match['version']} {match['name']}".strip())
    named = [(name, downs) for name, downs in sections if name or downs]
    if len(named) <= 1:
        return [down for _name, downs in named for down in downs]
    return [f"{_short(name)}: {down}" for name, downs in named for down in downs]


def parse_background_status(output: str) -> list[BackgroundMigration]:
    """Every migration in the output of ``gitlab-rake gitlab:background_migrations:status``.

    GitLab prints ``Database: NAME`` before each database's migrations, then one line per migration:
    ``STATUS | JOB_CLASS_NAME,TABLE_NAME,COLUMN_NAME,JOB_ARGUMENTS_JSON``. The database is kept only
    when the output covers several. Lines of other shapes (warnings, blank lines) are skipped.
    """
    found: list[tuple[str, BackgroundMigration]] = []
    database = ""
    for line in output.splitlines():
        heading = _DATABASE_LINE.match(line)
        if heading:
            database = heading["database"]
            continue
        match = _BACKGROUND_LINE.match(line)
        if not match:
            continue
        job_class, _, rest = match["fields"].partition(",")
        table, _, rest = rest.partition(",")
        column, _, _arguments = rest.partition(",")
        found.append(
            (
                database,
                BackgroundMigration(
                    job_class_name=job_class.strip(),
                    table_name=table.strip(),
                    column_name=column.strip(),
                    status=match["status"],
                ),
            )
        )
    several = len({name for name, _ in found}) > 1
    return [attrs.evolve(m, database=name) if several else m for name, m in found]


def _short(database: str) -> str:
    """``main`` for ``gitlabhq_production``, ``ci`` for ``gitlabhq_production_ci``, else the name."""
    return database.rsplit("_", 1)[1] if database.endswith("_ci") else ("main" if database else database)


class GitLabRakeRunner:
    """Runs ``gitlab-rake db:migrate`` for the ``pre`` and ``post`` stages.

    Built by the ``gitlab-rake`` plugin record from a :class:`GitLabRakeConfig` and a
    :class:`~zdu.migrations.MigrationEnv`.

    :ivar executor: where the commands run: the platform's when it provides ``command-host``, else this
        machine.
    """

    def __init__(
        self, config: GitLabRakeConfig, env: MigrationEnv, executor: CommandExecutor | None = None
    ) -> None:
        self.config = config
        self.executor: CommandExecutor = executor or platform_executor(env) or LocalCommandExecutor()

    def _env(self, stage: Stage) -> dict[str, str | None]:
        changes: dict[str, str | None] = dict(self.config.env)
        changes[SKIP_POST_DEPLOYMENT_MIGRATIONS] = "true" if stage is Stage.PRE else None
        return changes

    def _execute(
        self, argv: list[str], stage: Stage, on_output: Callable[[str], None] | None = None
    ) -> CommandResult:
        try:
            result = self.executor.run(argv, self._env(stage), self.config.timeout, on_output)
        except CommandError as error:
            raise MigrationError(f"{stage} migrations: {error}") from None
        if result.returncode != 0:
            tail = "\n".join(result.output.splitlines()[-_OUTPUT_TAIL:])
            raise MigrationError(
                f"{stage} migrations: {' '.join(argv)} failed with exit status {result.returncode}"
                + (f"; its last lines:\n{tail}" if tail else "")
            )
        return result

    def _status(self, stage: Stage) -> list[str]:
        if not self.config.status_command:
            return []
        result = self._execute(self.config.status_command, stage)
        return parse_status(result.output)

    def pending(self, stage: Stage) -> list[str]:
        """The migrations ``db:migrate`` would apply in ``stage`` now (``"<version> <name>"``).

        ``pre``: the ``down`` lines of the status command run with ``SKIP_POST_DEPLOYMENT_MIGRATIONS``;
        ``post``: those of the status command without it, less the ``pre`` ones. Changes nothing.

        :raises MigrationError: the status command failed.
        """
        regular = self._status(Stage.PRE)
        if stage is Stage.PRE:
            return regular
        pending_regular = set(regular)
        return [name for name in self._status(Stage.POST) if name not in pending_regular]

    def run(self, stage: Stage, ctx: UpgradeContext) -> list[str]:
        """Run the migration command for ``stage``; return the migrations it applied.

        Idempotent: when the status command lists nothing pending, the migration command is not run.
        Every line of output is logged and recorded in the journal (``migration-output`` events).

        :raises MigrationError: a command failed (exit status and last lines of output) or timed out.
        """
        before = self.pending(stage)
        if self.config.status_command and not before:
            ctx.event("migrations", f"no {stage} migrations pending; {' '.join(self.config.command)} not run")
            return []
        if ctx.dry_run:
            return []
        skip = "with" if stage is Stage.PRE else "without"
        action = f"{' '.join(self.config.command)} {skip} {SKIP_POST_DEPLOYMENT_MIGRATIONS}"

        def record(line: str) -> None:
            log.info("%s: %s", stage, line)
            ctx.event("migration-output", line, stage=str(stage))

        with ctx.step(action, stage=str(stage), command=list(self.config.command), pending=before):
            self._execute(self.config.command, stage, record)
        if not self.config.status_command:
            return []
        after = set(self.pending(stage))
        return [name for name in before if name not in after]

    def background_migrations(self) -> list[BackgroundMigration]:
        """The unfinished batched background migrations, as ``background_status_command`` lists them.

        Changes nothing; none when there is no such command.

        :raises MigrationError: the command failed or timed out.
        """
        argv = self.config.background_status_command
        if not argv:
            return []
        try:
            result = self.executor.run(argv, dict(self.config.env), self.config.timeout)
        except CommandError as error:
            raise MigrationError(f"background migrations: {error}") from None
        if result.returncode != 0:
            tail = "\n".join(result.output.splitlines()[-_OUTPUT_TAIL:])
            raise MigrationError(
                f"background migrations: {' '.join(argv)} failed with exit status {result.returncode}"
                + (f"; its last lines:\n{tail}" if tail else "")
            )
        return [m for m in parse_background_status(result.output) if not m.finished]

    def reversible(self, stage: Stage) -> bool:
        """``False`` for both stages: GitLab's migrations are not rolled back by zdu.

        ``pre`` migrations stay in place on a rollback (the old version works with them, by GitLab's
        rules); ``post`` migrations are the point of no return.
        """
        return False


def platform_executor(env: MigrationEnv) -> CommandExecutor | None:
    """The platform's executor when it provides ``command-host``, else ``None``."""
    return env.command_host.command_executor if env.provides(COMMAND_HOST) else None
