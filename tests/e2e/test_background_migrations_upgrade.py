"""Batched background migrations gate a real upgrade: refused before it starts, waited for at its end.

A fleet of demo apps on one SQLite database, upgraded with the ``sql`` runner and the demo
migrations; 16.6's post-deployment migration queues ``BackfillProjectsPath``, which the demo worker
(a real process) runs batch by batch.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from zdu.config import load_config
from zdu.migrations import MigrationEnv, Stage
from zdu.model import UpgradeStatus
from zdu.registry import get_plugin_manager
from zdu.secret import Secret
from zdu.upgrade import Upgrade
from zdu_demo import demo_app_command
from zdu_demo.demo_app import DEMO_BASE_SCHEMA, DEMO_MIGRATIONS
from zdu_migrations.sql import SqlRunner, SqlRunnerConfig

from .conftest import FROM, write_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")


def background_config(
    directory: Path, *, wait: bool, through: str = DEMO_BASE_SCHEMA
) -> tuple[Path, SqlRunner]:
    """A fleet on one SQLite database migrated up to ``through``, upgraded with the sql runner."""
    database = directory / "gitlab.sqlite"
    config = write_config(
        directory,
        platform={"command": demo_app_command(0.3, "--database", str(database))},
        layers=["sticky-nginx"],  # pages and their assets from one version: the probe counts asset errors
    )
    with config.open("a") as file:
        file.write(
            f'[migrations]\nname = "sql"\ndatabase = "sqlite://{database}"\npath = "{DEMO_MIGRATIONS}"\n'
            f"wait_for_background_migrations = {json.dumps(wait)}\n"
            "background_migrations_timeout = 120\nbackground_migrations_interval = 0.2\n"
        )
    loaded = load_config(config, get_plugin_manager())
    env = MigrationEnv(target=loaded.target, platform=None, state_dir=directory, config_dir=directory)  # type: ignore[arg-type]
    runner = SqlRunner(SqlRunnerConfig(database=Secret(f"sqlite://{database}"), path=DEMO_MIGRATIONS), env)
    runner.apply(Stage.PRE, through=through)
    return config, runner


def zdu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZDU, *args], capture_output=True, text=True, timeout=300, check=False)


def test_plan_and_upgrade_refuse_a_target_with_unfinished_background_migrations(tmp_path, fleet):
    # 16.5 as a target that still runs an earlier release's background migration
    config, _ = background_config(tmp_path, wait=False, through="20231016000003")
    database = tmp_path / "gitlab.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO batched_background_migrations (id, job_class_name, table_name, column_name, "
            "max_value, batch_size, status) VALUES (1, 'BackfillNamespaceTraversalIds', 'namespaces', 'id', "
            "100, 10, 1)"
        )
    platform = fleet(config)

    plan = zdu("plan", str(config))
    upgrade = zdu("upgrade", str(config))

    for refused in (plan, upgrade):
        assert refused.returncode == 2, refused.stderr
        said = " ".join(refused.stderr.split())  # the console wraps long lines
        assert (
            "1 unfinished batched background migration: BackfillNamespaceTraversalIds on namespaces.id"
            in said
        )
    assert [str(g.version) for g in type(platform)(platform.config, platform.env).groups()] == [FROM]
    assert "no upgrades recorded" in zdu("status", "--config", str(config)).stdout  # nothing started
    # the control: the same commands go ahead once it is finished
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE batched_background_migrations SET status = 3")
    assert zdu("plan", str(config)).returncode == 0


def test_with_the_wait_the_upgrade_ends_only_when_they_are_done(tmp_path, fleet):
    config, runner = background_config(tmp_path, wait=True)
    fleet(config)
    worker = subprocess.Popen(
        [sys.executable, "-m", "zdu_demo.demo_worker", "--database", str(tmp_path / "gitlab.sqlite")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        upgrade = Upgrade.from_config(config)
        report = upgrade.run()
    finally:
        worker.terminate()
        worker.wait(30)

    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    assert runner.background_migrations() == []
    with sqlite3.connect(tmp_path / "gitlab.sqlite") as connection:
        [(finished_at,)] = connection.execute(
            "SELECT finished_at FROM batched_background_migrations"
        ).fetchall()
    assert datetime.datetime.fromisoformat(finished_at).timestamp() <= report.finished_at
    events = [(e.phase, e.kind, e.data) for e in upgrade.journal.events(report.upgrade_id)]
    queued = next(
        i for i, (p, k, d) in enumerate(events) if k == "migrations-applied" and p == "migrate(post)"
    )
    waits = [(i, d) for i, (p, k, d) in enumerate(events) if k == "background-migrations"]
    assert waits and all(i > queued and events[i][0] == "migrate(post)" for i, _ in waits)
    progress = [d["unfinished"][0]["progress"] for _, d in waits if d["unfinished"]]
    assert progress and progress == sorted(progress)
    assert waits[-1][1]["unfinished"] == []

    shown = zdu("report", report.upgrade_id, "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "migrations (seconds" in shown.stdout
    assert "post  20231016000005_queue_backfill_projects_path" in shown.stdout
    assert "no batched background migration left unfinished" in shown.stdout


def test_without_the_wait_the_upgrade_ends_with_them_unfinished(tmp_path, fleet):
    """The control of the wait: no worker, no wait: the upgrade is called finished anyway."""
    config, runner = background_config(tmp_path, wait=False)
    fleet(config)
    report = Upgrade.from_config(config).run()
    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    [left] = runner.background_migrations()
    assert (left.job_class_name, left.status) == ("BackfillProjectsPath", "active")
