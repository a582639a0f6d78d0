"""The ``sql`` migration runner: ``.sql`` files in GitLab's layout, on SQLite or PostgreSQL.

Configuration (``[migrations]``)::

    [migrations]
    name = "sql"
    database = "sqlite:////var/lib/zdu/gitlab.sqlite"     # or postgresql://USER:PASSWORD@HOST:PORT/DB
    path = "migrations"           # holds db/migrate/ and db/post_migrate/; relative to this file
    lock_timeout = 600            # seconds to wait while another runner migrates
    lock_retries = "marked"       # which migrations get lock retries: "marked", "all" or "none"
    lock_retry_lock_timeout = 0.1 # lock_timeout of each attempt, seconds
    lock_retry_attempts = 40      # attempts before the migration fails
    lock_retry_backoff = 0.05     # wait after the first failed attempt, seconds; doubles each time...
    lock_retry_backoff_max = 3.0  # ...up to this
    invalid_index_drop_timeout = 300   # seconds to drop an INVALID index a failed statement left

``db/migrate/*.sql`` are the regular (``pre``) migrations, ``db/post_migrate/*.sql`` the
post-deployment (``post``) ones, each named ``<timestamp>_<name>.sql``. What ran is recorded in
GitLab's ``schema_migrations`` table, one migration per transaction; a lock held for the whole run
(see :mod:`zdu_migrations.databases`) makes a second runner wait, then find nothing left to do.

**Lock retries** are GitLab's ``with_lock_retries``: a DDL statement that waits for a table lock
(an ``ALTER TABLE`` behind a long transaction) makes every query that comes after it wait too, since
PostgreSQL queues them behind its ``ACCESS EXCLUSIVE`` request. With lock retries each attempt runs
with a short ``lock_timeout``; an attempt that gives up is rolled back at once (letting the queued
queries through), and the migration tries again after a growing wait (tenacity), until it gets the
lock or runs out of attempts. So the migration waits instead of the users. Unlike GitLab, which runs a
last attempt without any timeout, the runner then fails, naming the migration: the schema is as
before it. Every failed attempt is journaled (``lock-retry`` events), and so is each migration's time,
attempts and time lost to locks (``migration-timing``), which ``zdu report`` shows. Lock retries need
PostgreSQL: on SQLite the directives are accepted and the migration runs as usual.

Migrations marked ``-- zdu: disable_ddl_transaction`` run outside a transaction, statement by
statement; lock retries then apply to each statement. See :mod:`zdu_migrations.files` for the
directives and :mod:`zdu_migrations.databases` for what happens to the INVALID index a failed
``CREATE INDEX CONCURRENTLY`` leaves.

The runner can also tell the target's unfinished batched background migrations
(:meth:`SqlRunner.background_migrations`, from GitLab's ``batched_background_migrations`` table), for
the orchestrator's preflight check and its wait at the end of ``migrate(post)``.

Neither stage is reversible: the files have no down-migrations. A rollback before ``migrate(post)``
leaves the regular migrations in place, which is safe because GitLab's rules make them additive (the
old version works with them); after ``migrate(post)`` there is no rollback at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import tenacity

from zdu.plugins import (
    BackgroundMigration,
    ConfigError,
    MigrationEnv,
    MigrationError,
    Secret,
    Stage,
    UpgradeInterrupted,
)
from zdu_migrations.databases import Database, DatabaseSession, LockTimeout, open_database
from zdu_migrations.files import Directives, MigrationFile, migration_files, parse_directives

if TYPE_CHECKING:
    from zdu.plugins import UpgradeContext

__all__ = ["LOCK_RETRIES", "LockRetries", "SqlRunner", "SqlRunnerConfig"]

T = TypeVar("T")

#: The values of ``lock_retries``: which migrations run with lock retries.
LOCK_RETRIES = ("marked", "all", "none")

log = logging.getLogger("zdu_migrations.sql")


def _positive(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _one_of_lock_retries(_instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in LOCK_RETRIES:
        raise ValueError(
            f"{attribute.name} must be one of {', '.join(map(repr, LOCK_RETRIES))}, got {value!r}"
        )


def _at_least_one(_instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be 1 or more, got {value!r}")


def _not_negative(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value!r}")


@attrs.frozen
class LockRetries:
    """How one migration retries when it cannot get a lock (GitLab's ``with_lock_retries``).

    :ivar lock_timeout: seconds each attempt may wait for a lock before it gives up and is rolled back.
    :ivar attempts: how many attempts before the migration fails.
    :ivar backoff: seconds to wait after the first failed attempt; the wait doubles after each one...
    :ivar backoff_max: ...up to this many seconds.
    """

    lock_timeout: float = attrs.field(default=0.1, validator=_positive)
    attempts: int = attrs.field(default=40, validator=_at_least_one)
    backoff: float = attrs.field(default=0.05, validator=_not_negative)
    backoff_max: float = attrs.field(default=3.0, validator=_not_negative)


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
    :ivar lock_retries: which migrations run with lock retries: ``"marked"`` (those with a
        ``-- zdu: enable_lock_retries`` line, as GitLab marks them), ``"all"`` (every migration) or
        ``"none"``.
    :ivar lock_retry_lock_timeout: the ``lock_timeout`` of each attempt, in seconds.
    :ivar lock_retry_attempts: attempts before a migration fails.
    :ivar lock_retry_backoff: seconds to wait after the first failed attempt; doubled after each one...
    :ivar lock_retry_backoff_max: ...up to this many seconds.
    :ivar invalid_index_drop_timeout: seconds the ``DROP INDEX CONCURRENTLY`` of an INVALID index left by
        a failed statement may take (it waits for older transactions but blocks no query); after that
        the index is left, and the error gives the command that drops it.
    """

    database: Secret
    path: Path
    lock_timeout: float = attrs.field(default=600.0, validator=_positive)
    lock_retries: str = attrs.field(default="marked", validator=_one_of_lock_retries)
    lock_retry_lock_timeout: float = attrs.field(default=0.1, validator=_positive)
    lock_retry_attempts: int = attrs.field(default=40, validator=_at_least_one)
    lock_retry_backoff: float = attrs.field(default=0.05, validator=_not_negative)
    lock_retry_backoff_max: float = attrs.field(default=3.0, validator=_not_negative)
    invalid_index_drop_timeout: float = attrs.field(default=300.0, validator=_positive)

    def retries_for(self, directives: Directives) -> LockRetries | None:
        """The lock retries of a migration with these directives (``None``: it runs without)."""
        if self.lock_retries == "none" or (self.lock_retries == "marked" and not directives.lock_retries):
            return None
        return LockRetries(
            lock_timeout=directives.lock_timeout or self.lock_retry_lock_timeout,
            attempts=directives.attempts or self.lock_retry_attempts,
            backoff=self.lock_retry_backoff,
            backoff_max=self.lock_retry_backoff_max,
        )


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
        self.database: Database = open_database(
            config.database,
            lock_timeout=config.lock_timeout,
            invalid_index_drop_timeout=config.invalid_index_drop_timeout,
        )

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

    def background_migrations(self) -> list[BackgroundMigration]:
        """The unfinished batched background migrations in ``batched_background_migrations``.

        GitLab's table: a row per migration with ``job_class_name``, ``table_name``, ``column_name``,
        ``status`` (GitLab's codes: 0 paused, 1 active, 3 finished, 4 failed, 5 finalizing, 6
        finalized) and ``min_value``/``max_value``; the progress comes from the succeeded rows of
        ``batched_background_migration_jobs`` when that table exists. Reads only; no table, none.
        """
        return self.database.background_migrations()

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
        directives = parse_directives(migration.path, sql)
        retries = self.config.retries_for(directives)
        data = {"stage": str(migration.stage), "migration": migration.id, "file": str(migration.path)}
        action = f"migrate {migration.stage} {migration.id}"
        log.info("%s: started", action)
        timing = _Timing()
        try:
            if ctx is None:
                applied = self._execute(session, migration, sql, directives, retries, ctx, timing)
            else:
                with ctx.step(action, **data):
                    applied = self._execute(session, migration, sql, directives, retries, ctx, timing)
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
        duration = time.monotonic() - timing.started
        retried = f", {timing.attempts} attempts, {timing.lock_wait:.2f}s lost to locks" if retries else ""
        log.info("%s: applied in %.2fs%s", action, duration, retried)
        _event(
            ctx,
            "migration-timing",
            f"{migration.id} applied in {duration:.2f}s{retried}",
            **data,
            duration_s=round(duration, 3),
            attempts=timing.attempts,
            lock_wait_s=round(timing.lock_wait, 3),
            lock_retries=retries is not None,
            transactional=directives.transactional,
        )
        return [migration.id]

    def _execute(
        self,
        session: DatabaseSession,
        migration: MigrationFile,
        sql: str,
        directives: Directives,
        retries: LockRetries | None,
        ctx: UpgradeContext | None,
        timing: _Timing,
    ) -> bool:
        """Run one migration, in a transaction or statement by statement; ``False``: recorded already."""
        if directives.transactional:
            return self._with_retries(
                lambda timeout: session.apply(migration, sql, lock_timeout=timeout),
                migration,
                retries,
                ctx,
                timing,
            )
        if migration.version in session.applied():
            return False

        def on_event(kind: str, message: str, data: dict[str, Any]) -> None:
            log.warning("%s: %s", migration.id, message)
            _event(ctx, kind, message, **data)

        for statement in session.statements(sql):

            def run(timeout: float | None, statement: str = statement) -> None:
                session.run_statement(migration, statement, lock_timeout=timeout, on_event=on_event)

            self._with_retries(run, migration, retries, ctx, timing)
        return session.record(migration)

    def _with_retries(
        self,
        attempt: Callable[[float | None], T],
        migration: MigrationFile,
        retries: LockRetries | None,
        ctx: UpgradeContext | None,
        timing: _Timing,
    ) -> T:
        """Call ``attempt`` once, or, with lock retries, until it gets its locks or runs out of attempts."""
        if retries is None:
            timing.attempts += 1
            return attempt(None)
        attempt_started = time.monotonic()

        def before(state: tenacity.RetryCallState) -> None:
            nonlocal attempt_started
            attempt_started = time.monotonic()
            timing.attempts += 1

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            pause = state.next_action.sleep if state.next_action is not None else 0.0
            waited = time.monotonic() - attempt_started
            timing.lock_wait += waited + pause
            _event(
                ctx,
                "lock-retry",
                f"{migration.id}: attempt {state.attempt_number} of {retries.attempts} gave up on a lock "
                f"after {waited:.2f}s (lock_timeout {retries.lock_timeout:g}s); next attempt in {pause:.2f}s",
                migration=migration.id,
                attempt=state.attempt_number,
                attempts=retries.attempts,
                lock_timeout_s=retries.lock_timeout,
                waited_s=round(waited, 3),
                next_in_s=round(pause, 3),
                error=str(error) if error is not None else "",
            )

        def sleep(seconds: float) -> None:
            if ctx is None:
                time.sleep(seconds)
            elif ctx.cancel.wait(seconds):
                raise UpgradeInterrupted("the upgrade was interrupted while a migration waited for a lock")

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries.attempts),
            wait=tenacity.wait_exponential(multiplier=retries.backoff, max=retries.backoff_max),
            retry=tenacity.retry_if_exception_type(LockTimeout),
            before=before,
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        try:
            return retrying(attempt, retries.lock_timeout)
        except LockTimeout as error:
            waited = time.monotonic() - attempt_started
            timing.lock_wait += waited
            _event(
                ctx,
                "lock-retry",
                f"{migration.id}: attempt {timing.attempts} of {retries.attempts} gave up on a lock after "
                f"{waited:.2f}s (lock_timeout {retries.lock_timeout:g}s); no attempt left",
                migration=migration.id,
                attempt=timing.attempts,
                attempts=retries.attempts,
                lock_timeout_s=retries.lock_timeout,
                waited_s=round(waited, 3),
                next_in_s=None,
                error=str(error),
            )
            raise MigrationError(
                f"{error}; gave up after {retries.attempts} attempts with lock retries "
                f"({timing.lock_wait:.1f}s in all): a transaction holds a conflicting lock for longer; "
                "run the migrations again once it is gone"
            ) from None

    def reversible(self, stage: Stage) -> bool:
        """``False`` for both stages: there are no down-migrations.

        ``pre`` migrations stay in place on a rollback, which GitLab's rules make safe (they are
        additive and the old version works with them); ``post`` migrations are the point of no return.
        """
        return False


@attrs.define
class _Timing:
    """What one migration took: its attempts and the time they lost waiting for locks."""

    started: float = attrs.field(factory=time.monotonic)
    attempts: int = 0
    lock_wait: float = 0.0


def _event(ctx: UpgradeContext | None, kind: str, message: str, **data: Any) -> None:
    if ctx is not None:
        ctx.event(kind, message, **data)
