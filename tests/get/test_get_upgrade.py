"""The get strategy end to end: real terraform, real ansible-playbook, real HAProxy, demo-app nodes."""

from __future__ import annotations

import pytest

from tests.get.conftest import FROM, TO, get_config, requires_haproxy, run_upgrade
from zdu.model import UpgradeStatus
from zdu_get.haproxy import HAProxyRuntime
from zdu_get.node import read_node
from zdu_get.terraform import TerraformRunner

pytestmark = [pytest.mark.slow, requires_haproxy]

COMPONENTS = ["consul", "postgres", "pgbouncer", "redis", "gitaly", "praefect"]


def ansible_runs(journal, upgrade_id):
    """The host of every Ansible task result, with the run it belonged to, in journal order."""
    return [
        (e.data["run"], e.data["host"], e.data["status"])
        for e in journal.events(upgrade_id)
        if e.kind == "ansible"
    ]


def test_components_in_order_and_rails_nodes_one_at_a_time_drained(make_fleet, tmp_path):
    fleet = make_fleet()
    vars_before = fleet.vars_file.read_bytes()
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert report.value("failed_requests") == 0
    events = journal.events(report.upgrade_id)
    runs = ansible_runs(journal, report.upgrade_id)
    # one run per group, in GitLab's order, then the deploy node, the other nodes, sidekiq, post migrations
    order = []
    for run, _host, _status in runs:
        if run not in order:
            order.append(run)
    assert order == [
        *(f"{c} on {c}-1" for c in COMPONENTS),
        "rails node rails-1 (deploy node)",
        "rails node rails-2",
        "rails node rails-3",
        "sidekiq on sidekiq-1",
        "post-deployment migrations on rails-1",
    ]
    # every run touched only its own host, and each Rails node's run is whole before the next starts
    for run, host, _status in runs:
        if run.startswith("rails node"):
            assert run.split()[2] == host
        else:
            assert run.endswith(f" on {host}")
    rails_runs = [run for run, _h, _s in runs if run.startswith("rails node")]
    assert rails_runs == sorted(rails_runs, key=lambda r: order.index(r))  # no interleaving
    # each Rails node left HAProxy before its run and came back after it
    steps = [e.message for e in events if e.kind == "step-started"]
    for node in ("rails-1", "rails-2", "rails-3"):
        drain = steps.index(f"drain {node}")
        upgrade = steps.index(f"ansible gitlab_rails on {node} to {TO}")
        ready = steps.index(f"readiness of {node}")
        assert drain < upgrade < ready
    # the regular migrations ran on the deploy node only, skipping post-deployment ones; those came last
    log = [line.split() for line in (fleet.directory / "migrations.log").read_text().splitlines()]
    assert [line for line in log if line[0] != "install"] == [
        ["pre", "rails-1", TO, "SKIP_POST_DEPLOYMENT_MIGRATIONS=true"],
        ["post", "rails-1", TO, "SKIP_POST_DEPLOYMENT_MIGRATIONS=unset"],
    ]
    assert all(read_node(fleet.directory, n).version == TO for n in fleet.rails)
    # the inventory's vars file: only the version line changed
    after = fleet.vars_file.read_bytes()
    changed = [(b, a) for b, a in zip(vars_before.splitlines(), after.splitlines(), strict=True) if b != a]
    assert [(b.strip(), a.strip()) for b, a in changed] == [
        (
            f'gitlab_version: "{FROM}"   # the package every node installs'.encode(),
            f'gitlab_version: "{TO}"   # the package every node installs'.encode(),
        )
    ]


def test_absent_groups_are_skipped(make_fleet, tmp_path):
    fleet = make_fleet(components={"consul": ["consul-1"]}, rails=("rails-1", "rails-2"))
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    skipped = [e.data.get("component") for e in journal.events(report.upgrade_id) if e.kind == "skipped"]
    assert skipped == ["postgres", "pgbouncer", "redis", "gitaly", "praefect", "sidekiq"]
    # not silently: the plan in the journal names each one
    plan = [e.message for e in journal.events(report.upgrade_id) if e.kind == "plan"]
    assert any("praefect: 'praefect' has no host" in line for line in plan)


def test_a_failing_node_stops_the_upgrade_later_nodes_untouched_and_it_is_back_on_the_old_version(
    make_fleet, tmp_path
):
    # playbooks that can install an older package (gitlab_allow_downgrade), and zdu told so
    fleet = make_fleet(faults={"rails-2": ("never-ready", TO)})
    fleet.vars_file.write_text(
        fleet.vars_file.read_text() + "    zdu_node_ready_timeout: 3\n    gitlab_allow_downgrade: true\n"
    )
    pids = fleet.node_pids()
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state", allow_downgrade=True))
    assert report.status is UpgradeStatus.ROLLED_BACK
    assert "rails node rails-2 failed" in report.error and "not touched: rails-3" in report.error
    runs = ansible_runs(journal, report.upgrade_id)
    assert "rails-3" not in {host for _run, host, _status in runs}  # never touched by Ansible
    assert fleet.node_pids()["rails-3"] == pids["rails-3"]  # the same process, never restarted
    assert ("rails node rails-2", "rails-2", "failed") in runs
    # the failed node is back on the old version and in HAProxy; so is the deploy node, rolled back
    servers = {s.name: s for s in HAProxyRuntime(fleet.socket).servers("gitlab_rails")}
    for node in fleet.rails:
        assert read_node(fleet.directory, node).version == FROM
        assert servers[node].routed, servers[node]
    assert "post-deployment" not in {run.split()[0] for run, _h, _s in runs}
    assert f'gitlab_version: "{FROM}"' in fleet.vars_file.read_text()


def test_a_terraform_plan_that_would_destroy_is_refused_and_nothing_is_applied(make_fleet, tmp_path):
    fleet = make_fleet()
    terraform = tmp_path / "terraform"
    terraform.mkdir()
    (terraform / "main.tf").write_text(
        'variable "gitlab_version" { type = string }\n'
        'resource "terraform_data" "rails_image" { triggers_replace = var.gitlab_version }\n'
    )
    vars_before = fleet.vars_file.read_bytes()
    pids = fleet.node_pids()
    existing = TerraformRunner(terraform, tmp_path / "created.tfplan", {"gitlab_version": FROM})
    existing.plan()
    existing.apply_saved_plan()  # the environment as it was built, at the running version
    state = (terraform / "terraform.tfstate").read_text()
    report, journal = run_upgrade(
        get_config(
            fleet,
            tmp_path / "state",
            platform={"terraform_dir": str(terraform), "terraform_vars": {"gitlab_version": "{version}"}},
        )
    )
    assert report.status is UpgradeStatus.ROLLED_BACK
    assert "would destroy or replace: terraform_data.rails_image (delete/create)" in report.error
    assert (terraform / "terraform.tfstate").read_text() == state  # nothing applied
    assert fleet.vars_file.read_bytes() == vars_before  # nothing else done
    assert fleet.node_pids() == pids
    assert not [e for e in journal.events(report.upgrade_id) if e.kind == "ansible"]
