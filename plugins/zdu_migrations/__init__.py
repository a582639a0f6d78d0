"""First-party migration runners: ``sql`` (``.sql`` files on SQLite or PostgreSQL) and ``gitlab-rake``.

Registered through the entry point ``migrations`` in group ``zdu``, exactly as a third-party plugin.
PostgreSQL needs the extra ``zdu[postgresql]`` (psycopg), loaded only when a ``postgresql://`` URL is
configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.plugins import LocalCommandExecutor, MigrationRunnerPlugin, hookimpl
from zdu_migrations.gitlab_rake import GitLabRakeConfig, GitLabRakeRunner
from zdu_migrations.sql import SqlRunner, SqlRunnerConfig

__all__ = ["GitLabRakeConfig", "GitLabRakeRunner", "LocalCommandExecutor", "SqlRunner", "SqlRunnerConfig"]


@hookimpl
def zdu_migration_runners() -> Iterator[MigrationRunnerPlugin[Any]]:
    """Register ``sql`` and ``gitlab-rake``."""
    yield MigrationRunnerPlugin(
        name="sql",
        summary=".sql files in db/migrate and db/post_migrate, on SQLite or PostgreSQL, under a lock",
        config=SqlRunnerConfig,
        factory=SqlRunner,
    )
    yield MigrationRunnerPlugin(
        name="gitlab-rake",
        summary="gitlab-rake db:migrate, post-deployment migrations skipped in the pre stage",
        config=GitLabRakeConfig,
        factory=GitLabRakeRunner,
        requires=frozenset(),  # the platform's command-host when it provides one, else this machine
    )
