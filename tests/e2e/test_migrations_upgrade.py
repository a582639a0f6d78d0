"""Migrations in two stages, ordered by the orchestrator, on a real fleet sharing a real database."""

from __future__ import annotations

import json
import shutil
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

from .conftest import FROM, TO, Traffic, write_config

pytestmark = pytest.mark.slow

ZDU = str(Path(sys.executable).parent / "zdu")


def migrating_config(
    directory: Path, migrations: Path = DEMO_MIGRATIONS, *, defer_post: bool = False, **kw
) -> Path:
    """A fleet of demo apps on one SQLite database at 16.5's schema, upgraded with the sql runner."""
    database = directory / "gitlab.sqlite"
    config = write_config(
        directory, platform={"command": demo_app_command(0.3, "--database", str(database))}, **kw
    )
    with config.open("a") as file:
        file.write(
            f'[migrations]\nname = "sql"\ndatabase = "sqlite://{database}"\npath = "{migrations}"\n'
            f"defer_post = {json.dumps(defer_post)}\n"
        )
    loaded = load_config(config, get_plugin_manager())
    env = MigrationEnv(target=loaded.target, platform=None, state_dir=directory, config_dir=directory)  # type: ignore[arg-type]
    runner = SqlRunner(SqlRunnerConfig(database=Secret(f"sqlite://{database}"), path=migrations), env)
    runner.apply(Stage.PRE, through=DEMO_BASE_SCHEMA)
    return config


def columns(directory: Path) -> list[str]:
    with sqlite3.connect(directory / "gitlab.sqlite") as db:
        return [row[1] for row in db.execute("PRAGMA table_info(projects)")]


def kinds(upgrade: Upgrade, upgrade_id: str) -> list[tuple[str, str]]:
    return [(e.phase, e.kind + ":" + e.message) for e in upgrade.journal.events(upgrade_id)]


def test_pre_before_new_code_post_after_old_code_is_gone(tmp_path, fleet):
    config = migrating_config(tmp_path, layers=["sticky-nginx"])
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade = Upgrade.from_config(config)
    report = upgrade.run()
    traffic.stop()
    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    assert report.value("failed_requests") == 0 and traffic.failures() == []
    events = kinds(upgrade, report.upgrade_id)
    first_new_instance = next(i for i, (_, e) in enumerate(events) if e == "step-started:scale v16-6-0 to 1")
    pre_applied = next(
        i for i, (p, e) in enumerate(events) if p == "migrate(pre)" and e.startswith("migrations-applied")
    )
    post_applied = next(
        i for i, (p, e) in enumerate(events) if p == "migrate(post)" and e.startswith("migrations-applied")
    )
    old_gone = next(i for i, (_, e) in enumerate(events) if e == "step-finished:route only v16-6-0")
    assert pre_applied < first_new_instance < old_gone < post_applied
    assert "path" in columns(tmp_path) and "legacy_path" not in columns(tmp_path)


def test_a_failing_pre_migration_stops_the_upgrade_before_any_new_code_serves(tmp_path, fleet):
    migrations = tmp_path / "migrations"
    shutil.copytree(DEMO_MIGRATIONS, migrations)
    (migrations / "db" / "migrate" / "20231016000002_broken.sql").write_text(
        "ALTER TABLE nowhere ADD COLUMN x;\n"
    )
    config = migrating_config(tmp_path, migrations)
    platform = fleet(config)
    traffic = Traffic(platform.router.url).start()
    upgrade = Upgrade.from_config(config)
    report = upgrade.run()
    traffic.stop()
    assert report.status is UpgradeStatus.ROLLED_BACK, report.summary()
    assert "20231016000002_broken" in (report.error or "")
    events = kinds(upgrade, report.upgrade_id)
    assert not [e for _, e in events if e.startswith("step-started:scale v16-6-0")]  # no new instance started
    assert [str(g.version) for g in type(platform)(platform.config, platform.env).groups()] == [FROM]
    # the migration before it in the same run stays applied; the broken one left nothing behind
    assert columns(tmp_path) == ["id", "name", "legacy_path", "path"]
    assert traffic.failures() == [] and {r.version for r in traffic.responses} == {FROM}


def test_rollback_is_refused_once_post_migrations_started(tmp_path, fleet):
    migrations = tmp_path / "migrations"
    shutil.copytree(DEMO_MIGRATIONS, migrations)
    (migrations / "db" / "post_migrate" / "20231016000009_broken.sql").write_text("DROP TABLE nowhere;\n")
    config = migrating_config(tmp_path, migrations)
    fleet(config)
    report = Upgrade.from_config(config).run()
    assert report.status is UpgradeStatus.FAILED, report.summary()
    assert "no rollback: fix forward" in (report.error or "")
    refused = subprocess.run(
        [ZDU, "rollback", report.upgrade_id, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "point of no return" in refused.stderr and "roll forward" in refused.stderr


def test_plan_lists_pending_migrations_of_each_stage(tmp_path, fleet):
    config = migrating_config(tmp_path, defer_post=True)
    fleet(config)
    plan = subprocess.run([ZDU, "plan", str(config), "--json"], capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    steps = [(s["phase"], s["action"], s["detail"]) for s in json.loads(plan.stdout)["steps"]]
    assert ("migrate(pre)", "migrate", "20231016000000_add_path_to_projects") in steps
    assert ("migrate(post)", "deferred", "20231016000001_drop_legacy_path_from_projects") in steps


def test_deferred_post_migrations_run_later_with_zdu_migrate_post(tmp_path, fleet):
    config = migrating_config(tmp_path, defer_post=True)
    fleet(config)
    early = subprocess.run([ZDU, "migrate", "post", str(config)], capture_output=True, text=True, timeout=120)
    assert early.returncode == 2 and f"need the whole fleet on {TO}" in early.stderr
    report = Upgrade.from_config(config).run()
    assert report.status is UpgradeStatus.SUCCEEDED, report.summary()
    assert "legacy_path" in columns(tmp_path)  # deferred: still there
    later = subprocess.run(
        [ZDU, "migrate", "post", str(config), "--json"], capture_output=True, text=True, timeout=120
    )
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout)["status"] == "succeeded"
    assert "legacy_path" not in columns(tmp_path)


def test_running_post_migrations_before_the_rollout_breaks_the_old_version(tmp_path, fleet):
    """The hazard the ordering exists for: the unsafe option shows the failures the probe sees."""
    config = migrating_config(tmp_path, probe={"dry_run": True})
    fleet(config)
    upgrade = Upgrade(
        load_config(config, get_plugin_manager()), unsafe_run_post_migrations_before_rollout=True
    )
    report = upgrade.run()
    assert report.value("failed_requests") > 0
