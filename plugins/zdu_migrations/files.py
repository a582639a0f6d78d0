"""Migration files on disk: ``db/migrate/*.sql`` (pre) and ``db/post_migrate/*.sql`` (post).

A file is named ``<version>_<name>.sql``: ``version`` is a timestamp (``20231015120000``, GitLab's
``YYYYMMDDHHMMSS``), ``name`` lowercase words joined by ``_``. The version is what the database's
``schema_migrations`` table records, so it must be unique across both directories, as in GitLab.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from zdu.migrations import MigrationError, Stage

__all__ = ["STAGE_DIRECTORIES", "MigrationFile", "migration_files"]

#: Where each stage's files live, under the runner's ``path`` (GitLab's layout).
STAGE_DIRECTORIES = {Stage.PRE: Path("db") / "migrate", Stage.POST: Path("db") / "post_migrate"}

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
