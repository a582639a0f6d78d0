"""The phase table: one declaration of the phases, which every walk of the orchestrator reads.

The walks are exercised on a real upgrade of a ``sim`` cell: the run's phases, the rollback's undos,
``zdu migrate post`` and the plan all come from :data:`zdu.phases.PHASES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zdu.journal import Journal
from zdu.model import Phase, UpgradeStatus
from zdu.phases import PHASES, Gate
from zdu.registry import get_plugin_manager
from zdu.upgrade import Upgrade


def test_the_table_lists_the_model_phases_in_order() -> None:
    assert tuple(spec.phase for spec in PHASES) == Phase.ORDER


def test_the_point_of_no_return_agrees_with_the_model() -> None:
    assert [PHASES.rollback_possible(p) for p in Phase.ORDER] == [p.rollback_possible for p in Phase.ORDER]
    assert [spec.phase for spec in PHASES if spec.point_of_no_return] == [Phase.MIGRATE_POST]
    assert PHASES.past_the_point_of_no_return(["preflight", "rollout", "finalize"]) is None
    assert PHASES.past_the_point_of_no_return(["preflight", "migrate(post)"]) is Phase.MIGRATE_POST


def test_the_gates_the_table_declares() -> None:
    assert {spec.phase: spec.gate for spec in PHASES if spec.gate is not Gate.DUE} == {
        Phase.FINALIZE: Gate.FORCED,
        Phase.CLEANUP: Gate.NONE,
    }


def sim_upgrade(state: Path, **platform: Any) -> Upgrade:
    migrations = state / "app"
    (migrations / "db" / "migrate").mkdir(parents=True)
    (migrations / "db" / "post_migrate").mkdir(parents=True)
    (migrations / "db" / "migrate" / "20230101000000_add.sql").write_text("CREATE TABLE a (x int);\n")
    (migrations / "db" / "post_migrate" / "20230102000000_drop.sql").write_text("DROP TABLE a;\n")
    raw = {
        "target": {"name": "cell-1", "platform": "sim", "version": "16.5.0"},
        "platform": {"replicas": 2, "start_seconds": 1, "drain_seconds": 1, "time_scale": 0.01, **platform},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling", "layers": ["sticky-nginx"]},
        "migrations": {
            "name": "sql",
            "database": f"sqlite:///{state}/app.sqlite",
            "path": str(migrations),
            "defer_post": True,
        },
        "upgrade": {"state_dir": str(state)},
    }
    upgrade = Upgrade.from_config(raw, get_plugin_manager())
    upgrade.verify_seconds = 0
    return upgrade


def test_run_plan_and_migrate_post_follow_the_table(tmp_path: Path) -> None:
    upgrade = sim_upgrade(tmp_path)

    plan = upgrade.plan()
    report = upgrade.run()
    post = upgrade.migrate_post()

    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert [name for name, _ in report.phases] == [str(p) for p in Phase.ORDER]
    planned = [step.phase for step in plan.steps]
    assert planned == sorted(planned, key=lambda name: [str(p) for p in Phase.ORDER].index(name))
    assert ("migrate(post)", "deferred", "20230102000000_drop") in [
        (s.phase, s.action, s.detail) for s in plan.steps
    ]
    assert post.status is UpgradeStatus.SUCCEEDED, post.error
    assert [name for name, _ in post.phases] == ["migrate(post)"]
    events = Journal(tmp_path / "journal.sqlite").events(post.upgrade_id)
    assert [e.data["applied"] for e in events if e.kind == "migrations-applied"] == [["20230102000000_drop"]]


def test_a_rollback_undoes_the_strategy_then_the_layers_then_cleans_up(tmp_path: Path) -> None:
    upgrade = sim_upgrade(tmp_path, fail_versions=["16.6.0"], ready_timeout=0.5)

    report = upgrade.run()

    assert report.status is UpgradeStatus.ROLLED_BACK, report.error
    assert [name for name, _ in report.phases][-1] == "rollback"
    events = Journal(tmp_path / "journal.sqlite").events(report.upgrade_id)
    steps = [e.message for e in events if e.phase == "rollback" and e.kind == "step-started"]
    # the strategy's rollback (the old group back, the new one removed), then the layer's
    assert steps[-1] == "switch affinity off", steps
    assert "remove v16-6-0" in steps[:-1], steps
