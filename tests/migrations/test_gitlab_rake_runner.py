"""The ``gitlab-rake`` runner, against a stand-in gitlab-rake script that records how it was called."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import psutil
import pytest

from zdu.config import load_config
from zdu.errors import ConfigError, PreflightError
from zdu.executor import LocalCommandExecutor
from zdu.migrations import (
    BackgroundMigrationSource,
    CommandError,
    CommandExecutor,
    CommandResult,
    CommandTimeout,
    MigrationEnv,
    MigrationError,
    MigrationRunner,
    Stage,
    check_background_migrations,
    wait_for_background_migrations,
)
from zdu.model import Target
from zdu.registry import get_plugin_manager
from zdu_migrations.gitlab_rake import (
    GitLabRakeConfig,
    GitLabRakeRunner,
    parse_background_status,
    parse_status,
)

from .conftest import RecordedContext

STAND_IN = Path(__file__).with_name("stand_in_gitlab_rake.py")
MakeContext = Callable[..., RecordedContext]


@attrs.define
class StandIn:
    """The stand-in's state and record files."""

    directory: Path

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def record_file(self) -> Path:
        return self.directory / "record.jsonl"

    def calls(self) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines()]

    def migrate_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c.get("argv") == ["db:migrate"]]

    def up(self) -> dict[str, bool]:
        return {m["version"]: m["up"] for m in json.loads(self.state_file.read_text())["migrations"]}

    def config(self, **options: Any) -> GitLabRakeConfig:
        env = {
            "STAND_IN_RAKE_STATE": str(self.state_file),
            "STAND_IN_RAKE_RECORD": str(self.record_file),
            "RAILS_ENV": "production",
            **options.pop("env", {}),
        }
        options.setdefault("status_command", [sys.executable, str(STAND_IN), "db:migrate:status"])
        return GitLabRakeConfig(command=[sys.executable, str(STAND_IN), "db:migrate"], env=env, **options)


@pytest.fixture
def stand_in(tmp_path: Path) -> StandIn:
    """A stand-in with one migration applied, two regular and one post-deployment migration pending."""
    stand_in = StandIn(tmp_path)
    migrations = [
        {"version": "20231001000000", "name": "CreateProjects", "post": False, "up": True},
        {"version": "20231016000000", "name": "AddPathToProjects", "post": False, "up": False},
        {"version": "20231016000001", "name": "DropLegacyPathFromProjects", "post": True, "up": False},
        {"version": "20231016000002", "name": "AddIndexOnPath", "post": False, "up": False},
    ]
    stand_in.state_file.write_text(json.dumps({"migrations": migrations}))
    return stand_in


@pytest.fixture
def env(tmp_path: Path) -> MigrationEnv:
    """A MigrationEnv whose platform offers no executor."""
    return MigrationEnv(Target(name="t", platform="local", version="16.5.0"), object(), tmp_path)


def test_pending_splits_regular_from_post_deployment_migrations(stand_in: StandIn, env: MigrationEnv) -> None:
    runner = GitLabRakeRunner(stand_in.config(), env)
    assert isinstance(runner, MigrationRunner)

    assert runner.pending(Stage.PRE) == ["20231016000000 AddPathToProjects", "20231016000002 AddIndexOnPath"]
    assert runner.pending(Stage.POST) == ["20231016000001 DropLegacyPathFromProjects"]
    assert stand_in.migrate_calls() == []


def test_pre_skips_post_deployment_migrations_and_post_runs_them(
    stand_in: StandIn, env: MigrationEnv, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set in zdu's own environment: the post stage must remove it, or GitLab would skip them again.
    monkeypatch.setenv("SKIP_POST_DEPLOYMENT_MIGRATIONS", "true")
    runner = GitLabRakeRunner(stand_in.config(), env)

    applied = runner.run(Stage.PRE, make_context().ctx)

    assert applied == ["20231016000000 AddPathToProjects", "20231016000002 AddIndexOnPath"]
    assert stand_in.up() == {
        "20231001000000": True,
        "20231016000000": True,
        "20231016000001": False,
        "20231016000002": True,
    }
    (pre_call,) = stand_in.migrate_calls()
    assert pre_call["env"]["SKIP_POST_DEPLOYMENT_MIGRATIONS"] == "true"
    assert pre_call["env"]["RAILS_ENV"] == "production"

    applied = runner.run(Stage.POST, make_context().ctx)

    assert applied == ["20231016000001 DropLegacyPathFromProjects"]
    assert all(stand_in.up().values())
    post_call = stand_in.migrate_calls()[1]
    assert "SKIP_POST_DEPLOYMENT_MIGRATIONS" not in post_call["env"]
    assert post_call["env"]["RAILS_ENV"] == "production"


def test_a_second_run_does_not_run_the_command(
    stand_in: StandIn, env: MigrationEnv, make_context: MakeContext
) -> None:
    runner = GitLabRakeRunner(stand_in.config(), env)
    runner.run(Stage.PRE, make_context().ctx)
    runner.run(Stage.POST, make_context().ctx)
    again = make_context()

    assert runner.run(Stage.PRE, again.ctx) == []
    assert runner.run(Stage.POST, again.ctx) == []
    assert len(stand_in.migrate_calls()) == 2
    assert "step-started" not in again.kinds()


def test_output_is_streamed_into_events_and_logs(
    stand_in: StandIn, env: MigrationEnv, make_context: MakeContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="zdu_migrations")
    recorded = make_context()
    GitLabRakeRunner(stand_in.config(), env).run(Stage.PRE, recorded.ctx)

    lines = [e.message for e in recorded.events if e.kind == "migration-output"]
    assert lines == [
        "== 20231016000000 AddPathToProjects: migrating ======",
        "== 20231016000000 AddPathToProjects: migrated (0.0010s) =====",
        "== 20231016000002 AddIndexOnPath: migrating ======",
        "== 20231016000002 AddIndexOnPath: migrated (0.0010s) =====",
    ]
    kinds = recorded.kinds()
    assert kinds.index("step-started") < kinds.index("migration-output") < kinds.index("step-finished")
    assert "AddIndexOnPath: migrated" in caplog.text


def test_a_failing_migration_names_the_exit_status_and_the_output(
    stand_in: StandIn, env: MigrationEnv, make_context: MakeContext
) -> None:
    runner = GitLabRakeRunner(stand_in.config(env={"STAND_IN_RAKE_FAIL": "20231016000002"}), env)
    recorded = make_context()

    with pytest.raises(MigrationError) as failure:
        runner.run(Stage.PRE, recorded.ctx)

    message = str(failure.value)
    assert "failed with exit status 1" in message
    assert "stand-in failure in AddIndexOnPath" in message
    assert stand_in.up()["20231016000000"] is True  # applied before the failure, as Rails leaves it
    assert runner.pending(Stage.PRE) == ["20231016000002 AddIndexOnPath"]
    assert "step-failed" in recorded.kinds()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_hanging_command_is_stopped_with_its_children_after_the_timeout(
    stand_in: StandIn, env: MigrationEnv, make_context: MakeContext
) -> None:
    runner = GitLabRakeRunner(stand_in.config(env={"STAND_IN_RAKE_HANG": "1"}, timeout=2.0), env)
    runner.executor = LocalCommandExecutor(stop_grace=1.0)

    with pytest.raises(MigrationError, match=r"did not finish within 2s and was stopped"):
        runner.run(Stage.PRE, make_context().ctx)

    (hanging,) = [c["hanging"] for c in stand_in.calls() if "hanging" in c]
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in hanging) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in hanging)


@attrs.define
class RecordingExecutor:
    """A test double of a platform's executor (a toolbox pod, a deploy node): records, answers."""

    calls: list[tuple[list[str], dict[str, str | None]]] = attrs.field(factory=list)

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str | None],
        timeout: float,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        self.calls.append((list(argv), dict(env)))
        if on_output is not None:
            on_output("remote output")
        return CommandResult(0, "" if argv[-1] == "db:migrate" else "   down    20231016000000  AddPath\n")


@attrs.define
class PlatformWithExecutor:
    command_executor: RecordingExecutor


def test_the_platforms_executor_is_used_when_it_offers_one(tmp_path: Path, make_context: MakeContext) -> None:
    executor = RecordingExecutor()
    assert isinstance(executor, CommandExecutor)
    env = MigrationEnv(
        Target(name="t", platform="k", version="16.5.0"), PlatformWithExecutor(executor), tmp_path
    )
    runner = GitLabRakeRunner(GitLabRakeConfig(), env)
    recorded = make_context()

    runner.run(Stage.PRE, recorded.ctx)

    assert runner.executor is executor
    assert executor.calls[0] == (
        ["gitlab-rake", "db:migrate:status"],
        {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"},
    )
    assert (["gitlab-rake", "db:migrate"], {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"}) in executor.calls
    assert "remote output" in [e.message for e in recorded.events]


def test_without_a_status_command_the_command_always_runs(
    stand_in: StandIn, env: MigrationEnv, make_context: MakeContext
) -> None:
    runner = GitLabRakeRunner(stand_in.config(status_command=[]), env)
    assert runner.pending(Stage.PRE) == []
    assert runner.run(Stage.PRE, make_context().ctx) == []
    assert runner.run(Stage.PRE, make_context().ctx) == []
    assert len(stand_in.migrate_calls()) == 2
    assert stand_in.up()["20231016000000"] is True


def test_parse_status_of_several_databases() -> None:
    output = """
database: gitlabhq_production

 Status   Migration ID    Migration Name
--------------------------------------------------
   up     20231001000000  Create projects
  down    20231016000000  Add path to projects

database: gitlabhq_production_ci

 Status   Migration ID    Migration Name
--------------------------------------------------
  down    20231016000000  Add path to projects
   up     20231016000001  ********** NO FILE **********
"""
    assert parse_status(output) == [
        "main: 20231016000000 Add path to projects",
        "ci: 20231016000000 Add path to projects",
    ]
    single = output.split("database: gitlabhq_production_ci", maxsplit=1)[0]
    assert parse_status(single) == ["20231016000000 Add path to projects"]


def test_local_executor_sets_and_removes_variables_and_streams_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDU_TEST_REMOVED", "present")
    script = (
        "import os\n"
        "print('first', flush=True)\n"
        "print(os.environ.get('ZDU_TEST_SET'), os.environ.get('ZDU_TEST_REMOVED'), flush=True)\n"
        "raise SystemExit(3)\n"
    )
    lines: list[str] = []

    result = LocalCommandExecutor().run(
        [sys.executable, "-c", script], {"ZDU_TEST_SET": "set", "ZDU_TEST_REMOVED": None}, 60, lines.append
    )

    assert result == CommandResult(3, "first\nset None")
    assert lines == ["first", "set None"]
    assert os.environ["ZDU_TEST_REMOVED"] == "present"


def test_local_executor_reports_a_missing_program() -> None:
    with pytest.raises(CommandError, match="cannot run 'no-such-gitlab-rake'"):
        LocalCommandExecutor().run(["no-such-gitlab-rake", "db:migrate"], {}, 10)
    with pytest.raises(CommandTimeout):
        LocalCommandExecutor(stop_grace=1).run([sys.executable, "-c", "import time; time.sleep(60)"], {}, 0.5)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"command": []}, "command must name a program"),
        ({"timeout": -1}, "timeout must be positive"),
        (
            {"env": {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"}},
            "env must not set SKIP_POST_DEPLOYMENT_MIGRATIONS",
        ),
        ({"env": {"A": 1}}, "migrations.env['A']: expected a string, got 1"),
    ],
)
def test_bad_configuration_is_named(options: dict[str, object], expected: str) -> None:
    raw = {
        "target": {"name": "cell", "platform": "local", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling"},
        "migrations": {"name": "gitlab-rake", **options},
    }
    with pytest.raises(ConfigError) as error:
        load_config(raw, get_plugin_manager())
    assert expected in str(error.value)


# -- batched background migrations -------------------------------------------------------------------


class HealthyPlatform:
    """Enough of a platform for UpgradeContext.wait: it is always healthy."""

    def check_health(self) -> list[str]:
        return []


def background_stand_in(stand_in: StandIn, migrations: list[dict[str, Any]]) -> GitLabRakeRunner:
    state = json.loads(stand_in.state_file.read_text())
    state["background_migrations"] = migrations
    stand_in.state_file.write_text(json.dumps(state))
    config = stand_in.config(
        background_status_command=[sys.executable, str(STAND_IN), "gitlab:background_migrations:status"]
    )
    return GitLabRakeRunner(
        config, MigrationEnv(Target("t", "local", "16.5.0"), object(), stand_in.directory)
    )


def bbm(job_class: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_class_name": job_class,
        "table_name": "projects",
        "column_name": "id",
        "status": status,
        **extra,
    }


def test_unfinished_background_migrations_are_read_from_gitlab_and_refused(stand_in: StandIn) -> None:
    runner = background_stand_in(
        stand_in,
        [
            bbm("Done", "finished"),
            bbm("Sealed", "finalized"),
            bbm("Backfill", "active"),
            bbm("Broken", "failed"),
        ],
    )
    assert isinstance(runner, BackgroundMigrationSource)
    assert [(m.job_class_name, m.status) for m in runner.background_migrations()] == [
        ("Backfill", "active"),
        ("Broken", "failed"),
    ]
    with pytest.raises(PreflightError) as refused:
        check_background_migrations(runner)
    message = str(refused.value)
    assert "2 unfinished batched background migrations" in message
    assert "Backfill on projects.id (active)" in message and "Broken on projects.id (failed)" in message
    assert "Done" not in message and "Sealed" not in message
    status_calls = [c for c in stand_in.calls() if c.get("argv") == ["gitlab:background_migrations:status"]]
    assert status_calls and status_calls[0]["env"]["RAILS_ENV"] == "production"


def test_finished_background_migrations_let_the_upgrade_start(stand_in: StandIn) -> None:
    runner = background_stand_in(stand_in, [bbm("Done", "finished"), bbm("Sealed", "finalized")])
    check_background_migrations(runner)  # no error
    assert runner.background_migrations() == []


def test_the_wait_ends_when_gitlab_reports_them_finished(
    stand_in: StandIn, make_context: MakeContext
) -> None:
    runner = background_stand_in(stand_in, [bbm("Backfill", "active", finished_after=3)])
    recorded = make_context(platform=HealthyPlatform())
    wait_for_background_migrations(runner, recorded.ctx, timeout=60, interval=0.05)
    events = [e for e in recorded.events if e.kind == "background-migrations"]
    assert (
        "waiting for 1 batched background migrations: Backfill on projects.id (active)" in events[0].message
    )
    assert events[-1].data["unfinished"] == []
    assert len([c for c in stand_in.calls() if c.get("argv") == ["gitlab:background_migrations:status"]]) == 3


def test_the_wait_gives_up_after_its_timeout_naming_them(
    stand_in: StandIn, make_context: MakeContext
) -> None:
    runner = background_stand_in(stand_in, [bbm("Backfill", "active", finished_after=10_000)])
    with pytest.raises(
        MigrationError, match=r"still unfinished after 0.3s: Backfill on projects.id \(active\)"
    ):
        wait_for_background_migrations(
            runner, make_context(platform=HealthyPlatform()).ctx, timeout=0.3, interval=0.05
        )


def test_the_wait_stops_at_a_failed_one(stand_in: StandIn, make_context: MakeContext) -> None:
    runner = background_stand_in(stand_in, [bbm("Broken", "failed")])
    with pytest.raises(MigrationError, match=r"batched background migrations failed: Broken"):
        wait_for_background_migrations(
            runner, make_context(platform=HealthyPlatform()).ctx, timeout=60, interval=0.05
        )


def test_without_a_background_status_command_nothing_is_checked(stand_in: StandIn) -> None:
    config = stand_in.config(background_status_command=[])
    runner = GitLabRakeRunner(
        config, MigrationEnv(Target("t", "local", "16.5.0"), object(), stand_in.directory)
    )
    assert runner.background_migrations() == []
    assert stand_in.calls() == []


def test_parse_background_status_of_several_databases() -> None:
    output = (
        "Database: main\n"
        'finished   | CopyColumnUsingBackgroundMigrationJob,events,id,[["id"],["id_convert_to_bigint"]]\n'
        "active     | BackfillProjectsPath,projects,id,[]\n"
        "Database: ci\n"
        "paused     | BackfillCiBuilds,ci_builds,id,[]\n"
    )
    assert [m.describe() for m in parse_background_status(output)] == [
        "main: CopyColumnUsingBackgroundMigrationJob on events.id (finished)",
        "main: BackfillProjectsPath on projects.id (active)",
        "ci: BackfillCiBuilds on ci_builds.id (paused)",
    ]
    assert [m.name for m in parse_background_status("Database: main\nactive | A,t,c,[]\n")] == ["A on t.c"]
