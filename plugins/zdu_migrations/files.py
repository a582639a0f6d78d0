"""Migration files on disk: ``db/migrate/*.sql`` (pre) and ``db/post_migrate/*.sql`` (post).

A file is named ``<version>_<name>.sql``: ``version`` is a timestamp (``20231015120000``, GitLab's
``YYYYMMDDHHMMSS``), ``name`` lowercase words joined by ``_``. The version is what the database's
``schema_migrations`` table records, so it must be unique across both directories, as in GitLab.

A migration may carry **directives**, comment lines of the form ``-- zdu: NAME [KEY=VALUE ...]``
anywhere in the file, the counterparts of the class methods GitLab's Ruby migrations call:

* ``-- zdu: disable_ddl_transaction`` (GitLab's ``disable_ddl_transaction!``): the statements run one
  by one outside a transaction, as ``CREATE INDEX CONCURRENTLY`` requires. Such a migration must be
  idempotent (``IF NOT EXISTS``): when it fails half-way, the statements before the failure stay done
  and the next run starts it again from its first statement.
* ``-- zdu: enable_lock_retries`` (GitLab's ``enable_lock_retries!``): the migration runs with lock
  retries, a short ``lock_timeout`` per attempt and a growing wait between attempts (see
  :class:`~zdu_migrations.sql.SqlRunnerConfig`). ``lock_timeout=SECONDS`` and ``attempts=N`` override
  the runner's settings for this migration: ``-- zdu: enable_lock_retries lock_timeout=0.2 attempts=80``.

An unknown directive or option is an error: a misspelt one silently ignored would change how the
migration runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from zdu.plugins import MigrationError, Stage

__all__ = ["STAGE_DIRECTORIES", "Directives", "MigrationFile", "migration_files", "parse_directives"]

#: Where each stage's files live, under the runner's ``path`` (GitLab's layout).
STAGE_DIRECTORIES = {Stage.PRE: Path("db") / "migrate", Stage.POST: Path("db") / "post_migrate"}

_DIRECTIVE = re.compile(r"^\s*--\s*zdu:\s*(?P<name>[A-Za-z_]+)!?(?P<options>[^\n]*)$", re.MULTILINE)
_DIRECTIVE_NAMES = ("disable_ddl_transaction", "enable_lock_retries")
_FILE_NAME = re.compile(r"^(?P<version>[0-9]{1,20})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")


@attrs.frozen(order=False)
class MigrationFile:
    """One migration: a ``.sql`` file of one stage.

    :ivar version: the timestamp the file name starts with; recorded in ``schema_migrations``.
    :ivar name: the rest of the file name, without ``.sql``.
    :ivar stage: ``pre`` (``db/migrate``) or ``post`` (``db/post_migrate``).
    :ivar path: the file.
    """

    version: str
    name: str
    stage: Stage
    path: Path

    @property
    def id(self) -> str:
        """``<version>_<name>``: how a migration is named in plans, events and errors."""
        return f"{self.version}_{self.name}"

    @property
    def sort_key(self) -> tuple[int, str]:
        """Timestamp order."""
        return int(self.version), self.name

    def read(self) -> str:
        """The SQL text of the migration."""
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise MigrationError(f"migration {self.path}: cannot be read: {error}") from None


@attrs.frozen
class Directives:
    """How a migration asks to be run (its ``-- zdu:`` lines).

    :ivar transactional: ``False`` with ``disable_ddl_transaction``: statements run one by one, outside
        a transaction.
    :ivar lock_retries: ``True`` with ``enable_lock_retries``.
    :ivar lock_timeout: the ``lock_timeout`` of each attempt, when the migration sets it (seconds).
    :ivar attempts: how many attempts, when the migration sets it.
    """

    transactional: bool = True
    lock_retries: bool = False
    lock_timeout: float | None = None
    attempts: int | None = None


def parse_directives(path: Path, sql: str) -> Directives:
    """The directives in the text ``sql`` of the migration ``path``.

    :raises MigrationError: an unknown directive, or a bad option of ``enable_lock_retries``.
    """
    transactional, lock_retries = True, False
    lock_timeout: float | None = None
    attempts: int | None = None
    for match in _DIRECTIVE.finditer(sql):
        name, options = match["name"], match["options"].split()
        if name not in _DIRECTIVE_NAMES:
            raise MigrationError(
                f"migration {path}: unknown directive '-- zdu: {name}' (known: {', '.join(_DIRECTIVE_NAMES)})"
            )
        if name == "disable_ddl_transaction":
            if options:
                raise MigrationError(
                    f"migration {path}: disable_ddl_transaction takes no options, got {options}"
                )
            transactional = False
            continue
        lock_retries = True
        for option in options:
            key, _, value = option.partition("=")
            try:
                if key == "lock_timeout":
                    lock_timeout = float(value)
                    if not lock_timeout > 0:
                        raise ValueError
                elif key == "attempts":
                    attempts = int(value)
                    if attempts < 1:
                        raise ValueError
                else:
                    raise MigrationError(
                        f"migration {path}: enable_lock_retries: unknown option {key!r} "
                        "(known: lock_timeout=SECONDS, attempts=N)"
                    )
            except ValueError:
                raise MigrationError(
                    f"migration {path}: enable_lock_retries: {option!r} is not valid "
                    "(lock_timeout=SECONDS, positive; attempts=N, 1 or more)"
                ) from None
    return Directives(transactional, lock_retries, lock_timeout, attempts)


def migration_files(root: Path, stage: Stage) -> list[MigrationFile]:
    """The migrations of ``stage`` under ``root``, in timestamp order.

    A missing stage directory means no migration of that stage. Files that do not end in ``.sql`` are
    ignored (a README); a ``.sql`` file whose name is not ``<version>_<name>.sql`` is an error, and so
    is a version used twice (in either stage): silently skipping either would skip a migration.

    :raises MigrationError: a badly named file, or a version used twice.
    """
    found = _stage_files(root, stage)
    versions: dict[str, MigrationFile] = {}
    for other_stage in STAGE_DIRECTORIES:
        for migration in found if other_stage is stage else _stage_files(root, other_stage):
            if migration.version in versions:
                first = versions[migration.version]
                raise MigrationError(
                    f"migrations {first.path} and {migration.path} have the same version "
                    f"{migration.version}: every migration needs its own timestamp"
                )
            versions[migration.version] = migration
    return sorted(found, key=lambda m: m.sort_key)


def _stage_files(root: Path, stage: Stage) -> list[MigrationFile]:
    directory = root / STAGE_DIRECTORIES[stage]
    if not directory.is_dir():
        return []
    files = []
    for path in directory.iterdir():
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path}: the name must be <timestamp>_<name>.sql "
                "(such as 20231015120000_add_path_to_projects.sql)"
            )
        files.append(MigrationFile(match["version"], match["name"], stage, path))
    return files
