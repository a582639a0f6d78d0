"""The ``sql`` migration runner: ``.sql`` files in GitLab's layout, on SQLite or PostgreSQL.

Configuration (``[migrations]``)::

    [migrations]
    name = "sql"
    database = "sqlite:////var/lib/zdu/gitlab.sqlite"     # or postgresql://USER:PASSWORD@HOST:PORT/DB
    path = "migrations"           # holds db/migrate/ and db/post_migrate/; relative to this file
    lock_timeout = 600            # seconds to wait while another runner migrates

``db/migrate/*.sql`` are the regular (``pre``) migrations, ``db/post_migrate/*.sql`` the
post-deployment (``post``) ones, each named ``<timestamp>_<name>.sql``. What ran is recorded in
GitLab's ``schema_migrations`` table, one migration per transaction; a lock held for the whole run
(see :mod:`zdu_migrations.databases`) makes a second runner wait, then find nothing left to do.

Neither stage is reversible: the files have no down-migrations. A rollback before ``migrate(post)``
leaves the regular migrations in place, which is safe because GitLab's rules make them additive (the
old version works with them); after ``migrate(post)`` there is no rollback at all.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from zdu.errors import ConfigError
from zdu.migrations import MigrationEnv, MigrationError, Stage
from zdu.secret import Secret
from zdu_migrations.databases import Database, DatabaseSession, open_database
from zdu_migrations.files import MigrationFile, migration_files

if TYPE_CHECKING:
    from zdu.context import UpgradeContext

__all__ = ["SqlRunner", "SqlRunnerConfig"]

log = logging.getLogger("zdu_migrations.sql")


def _positive(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class SqlRunnerConfig:
    """Options of the ``sql`` runner.

    :ivar database: the database URL: ``sqlite:///ABSOLUTE/PATH`` (a SQLite file, created when
        missing) or ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME`` (needs ``zdu[postgresql]``; libpq
        URI parameters such as ``?sslmode=require`` are passed on). A secret: the journal, the logs
        and the errors never show the password.
    :ivar path: the directory holding ``db/migrate/`` and ``db/post_migrate/``; a relative path is
        relative to the configuration file's directory (to the current directory when the
        configuration was built in code).
    :ivar lock_timeout: seconds to wait for the migration lock while another runner holds it, before
        failing.
    """

    database: Secret
    path: Path
    lock_timeout: float = attrs.field(default=600.0, validator=_positive)


class SqlRunner:
    """Applies ``.sql`` migrations of one stage at a time, each once, each in its own transaction.

    Built by the ``sql`` plugin record from a :class:`SqlRunnerConfig` and a
    :class:`~zdu.migrations.MigrationEnv`.

    :raises ConfigError: ``path`` is not a directory, or ``database`` is not a usable URL.
    """

    def __init__(self, config: SqlRunnerConfig, env: MigrationEnv) -> None:
        self.config = config
        self.root = env.resolve(config.path)
        if not self.root.is_dir():
            raise ConfigError(
                f"migrations.path: {str(self.root)!r} is not a directory (it should hold db/migrate/ "
                "and db/post_migrate/)"
            )
        self.database: Database = open_database(config.database, lock_timeout=config.lock_timeout)

    def files(self, stage: Stage) -> list[MigrationFile]:
        """Every migration file of ``stage``, applied or not, in timestamp order."""
        return migration_files(self.root, stage)

    def applied(self) -> set[str]:
        """The versions the database's ``schema_migrations`` records (both stages)."""
        return self.database.applied()

    def pending(self, stage: Stage) -> list[str]:
        """The migrations of ``stage`` not recorded yet, in timestamp order (``<version>_<name>``).

        Reads only: a database that does not exist yet is not created.
        """
        applied = self.database.applied()
        return [m.id for m in self.files(stage) if m.version not in applied]

    def run(self, stage: Stage, ctx: UpgradeContext) -> list[str]:
        """Apply the pending migrations of ``stage`` under the lock; return those this call applied.

        Idempotent: a second run (or one that waited for another runner) applies nothing. Each
        migration is recorded with ``ctx.step`` before and after it runs. In a dry run nothing is
        applied.

        :raises MigrationError: a migration failed (it was rolled back; the ones before it in this
            run stay applied and recorded), or the database could not be reached or locked.
        """
        if ctx.dry_run:
            return []
        return self.apply(stage, ctx=ctx)

    def apply(
        self, stage: Stage, *, ctx: UpgradeContext | None = None, through: str | None = None
    ) -> list[str]:
        """Apply the pending migrations of ``stage``, optionally only those up to version ``through``.

        :meth:`run` is this without ``through``. ``through`` sets up a database as a given version
        left it (a demo's starting schema, a test): ``apply(Stage.PRE, through="20231001000000")``.
        ``ctx`` may be ``None`` outside an upgrade: the migrations are then only logged.
        """
        files = self.files(stage)
        if through is not None:
            files = [m for m in files if int(m.version) <= int(through)]
        database = self.database
        with database.session() as session:
            log.info(
                "%s migrations: lock taken on %s (%s)", stage, database.display, database.lock_description
            )
            applied = session.applied()
            todo = [m for m in files if m.version not in applied]
            _event(
                ctx,
                "migration-lock",
                f"took the migration lock of {database.display}; {len(todo)} {stage} migrations to apply",
                database=database.display,
                lock=database.lock_description,
                pending=[m.id for m in todo],
            )
            done: list[str] = []
            for migration in todo:
                if ctx is not None:
                    ctx.check_cancelled()
                done.extend(self._apply_one(session, migration, ctx, done))
        return done

    def _apply_one(
        self, session: DatabaseSession, migration: MigrationFile, ctx: UpgradeContext | None, done: list[str]
    ) -> list[str]:
        sql = migration.read()
        data = {"stage": str(migration.stage), "migration": migration.id, "file": str(migration.path)}
        action = f"migrate {migration.stage} {migration.id}"
        log.info("%s: started", action)
        try:
            if ctx is None:
                applied = session.apply(migration, sql)
            else:
                with ctx.step(action, **data):
                    applied = session.apply(migration, sql)
        except MigrationError as error:
            earlier = (
                f"; {len(done)} earlier migrations of this run stay applied: {', '.join(done)}"
                if done
                else ""
            )
            log.error("%s: failed: %s", action, error)
            raise MigrationError(f"{error}{earlier}") from None
        if not applied:
            log.info("%s: already applied by another runner", action)
            _event(ctx, "migration-skipped", f"{migration.id} was already applied", **data)
            return []
        log.info("%s: applied", action)
        return [migration.id]

    def reversible(self, stage: Stage) -> bool:
        """``False`` for both stages: there are no down-migrations.

        ``pre`` migrations stay in place on a rollback, which GitLab's rules make safe (they are
        additive and the old version works with them); ``post`` migrations are the point of no return.
        """
        return False


def _event(ctx: UpgradeContext | None, kind: str, message: str, **data: Any) -> None:
    if ctx is not None:
        ctx.event(kind, message, **data)
