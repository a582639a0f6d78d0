"""The get strategy on a GET-shaped fixture: GET's playbook paths, inventory groups, HAProxy names.

Real ansible-playbook (local connection) and a real HAProxy; the fixture's playbooks behave as GET's
are documented to: packages installed without a downgrade, migrations on ``gitlab_rails_primary``
unless ``SKIP_POST_DEPLOYMENT_MIGRATIONS`` is in the environment, templates from every Rails node's facts.
"""

from __future__ import annotations

import pytest

from tests.get.conftest import FROM, TO, get_config, requires_haproxy, run_upgrade
from zdu.config import structure
from zdu.errors import PlatformError
from zdu.model import Target, UpgradeStatus
from zdu.network import free_port
from zdu.platform import PlatformEnv
from zdu_get.config import GetPlatformConfig
from zdu_get.haproxy import HAProxyRuntime
from zdu_get.node import read_node
from zdu_get.platform import GetPlatform

pytestmark = [pytest.mark.slow, requires_haproxy]

RAILS = ("gitlab-rails-1", "gitlab-rails-2", "gitlab-rails-3")
GET_COMPONENTS = {
    "consul": ["consul-1"],
    "postgres": ["postgres-1"],
    "pgbouncer": ["pgbouncer-1"],
    "redis_cache": ["redis-cache-1"],
    "redis_persistent": ["redis-persistent-1"],
    "gitaly": ["gitaly-1"],
    "praefect": ["praefect-1", "praefect-2"],
    "praefect_primary": ["praefect-2"],
    "sidekiq": ["sidekiq-1", "sidekiq-2"],
    "haproxy_external": ["haproxy-external-1"],
}


def get_fleet(make_fleet, **options):
    return make_fleet(layout="get", rails=RAILS, components=dict(GET_COMPONENTS), **options)


def ansible_hosts(journal, upgrade_id):
    return [
        (e.data["run"], e.data["host"])
        for e in journal.events(upgrade_id)
        if e.kind == "ansible" and e.data["status"] != "skipped"
    ]


def test_get_layout_host_by_host_post_migrations_last_drained_in_every_backend(make_fleet, tmp_path):
    fleet = get_fleet(make_fleet)
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    assert report.status is UpgradeStatus.SUCCEEDED, report.error
    assert report.value("failed_requests") == 0
    runs = []
    for run, host in ansible_hosts(journal, report.upgrade_id):
        if (run, host) not in runs:
            runs.append((run, host))
    # one run per host, each limited to its host, the Praefect primary first, the Rails primary first
    assert [run for run, _host in runs] == [
        "consul on consul-1",
        "postgres on postgres-1",
        "pgbouncer on pgbouncer-1",
        "redis on redis-cache-1",
        "redis on redis-persistent-1",
        "gitaly on gitaly-1",
        "praefect on praefect-2",
        "praefect on praefect-1",
        "rails node gitlab-rails-1 (deploy node)",
        "rails node gitlab-rails-2",
        "rails node gitlab-rails-3",
        "sidekiq on sidekiq-1",
        "sidekiq on sidekiq-2",
        "post-deployment migrations on gitlab-rails-1",
    ]
    assert all(run.split(" on ")[-1] == host or host in run for run, host in runs)
    # GET's Rails role migrated on the primary with the environment variable: regular migrations only;
    # the post-deployment ones came after every Rails and Sidekiq node had installed the release
    log = [line.split() for line in (fleet.directory / "migrations.log").read_text().splitlines()]
    assert ["pre", "gitlab-rails-1", TO, "SKIP_POST_DEPLOYMENT_MIGRATIONS=true"] in log
    assert not [line for line in log if line[0] == "all"]  # never every migration mid-rollout
    post = [i for i, line in enumerate(log) if line[0] == "post"]
    assert len(post) == 1
    installs = {line[1]: i for i, line in enumerate(log) if line[0] == "install" and line[2] == TO}
    for host in (*RAILS, "sidekiq-1", "sidekiq-2"):
        assert installs[host] < post[0]
    assert log[post[0]] == ["post", "gitlab-rails-1", TO, "SKIP_POST_DEPLOYMENT_MIGRATIONS=unset"]
    # each Rails node was drained in both backends that list it (GET's names), and is back
    steps = [e.message for e in journal.events(report.upgrade_id) if e.kind == "step-started"]
    for node in RAILS:
        assert steps.index(f"drain {node}") < steps.index(f"ansible gitlab_rails on {node} to {TO}")
    runtime = HAProxyRuntime(fleet.socket)
    for backend, prefix in (("gitlab-rails", "gitlab-rails"), ("gitlab-registry", "gitlab-registry")):
        servers = {s.name: s for s in runtime.servers(backend)}
        assert sorted(servers) == [f"{prefix}{i}" for i in (1, 2, 3)]
        assert all(s.routed for s in servers.values())
    assert all(read_node(fleet.directory, n).version == TO for n in RAILS)


def _refused_before_any_change(fleet, report, journal):
    assert report.status is not UpgradeStatus.SUCCEEDED
    assert not [e for e in journal.events(report.upgrade_id) if e.kind == "ansible"]
    assert all(read_node(fleet.directory, n).version == FROM for n in RAILS)
    assert f'gitlab_version: "{FROM}"' in fleet.vars_file.read_text()


def test_a_rails_host_haproxy_does_not_list_is_refused_in_preflight(make_fleet, tmp_path):
    fleet = get_fleet(make_fleet)
    hosts = fleet.inventory / "hosts.yml"
    hosts.write_text(
        hosts.read_text().replace(
            "    gitlab_rails:\n      hosts:\n",
            "    gitlab_rails:\n      hosts:\n        gitlab-rails-0: {}\n",
        )
    )
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    _refused_before_any_change(fleet, report, journal)
    # gitlab-rails-0 sorts first: every server name shifts, and both backends are named
    assert "'gitlab-rails' does not match" in report.error
    assert "'gitlab-registry' does not match" in report.error
    assert "gitlab-rails4" in report.error


def test_haproxy_without_the_runtime_api_is_refused_with_the_fix(make_fleet, tmp_path):
    fleet = get_fleet(make_fleet, stats_socket=False)
    # what the target serves is read through the runtime API before anything is recorded or changed
    with pytest.raises(PlatformError) as refused:
        run_upgrade(get_config(fleet, tmp_path / "state"))
    assert f"'stats socket {fleet.socket} mode 600 level admin'" in str(refused.value)
    assert all(read_node(fleet.directory, n).version == FROM for n in RAILS)
    assert f'gitlab_version: "{FROM}"' in fleet.vars_file.read_text()


def test_a_package_gitlab_version_does_not_choose_is_refused(make_fleet, tmp_path):
    fleet = get_fleet(make_fleet)
    fleet.vars_file.write_text(fleet.vars_file.read_text() + '    gitlab_repo_package: "gitlab-ee"\n')
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    _refused_before_any_change(fleet, report, journal)
    assert "gitlab_repo_package" in report.error


def test_a_host_no_component_covers_is_refused(make_fleet, tmp_path):
    fleet = make_fleet(layout="get", rails=RAILS, components={**GET_COMPONENTS, "gitlab_nfs": ["nfs-1"]})
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    _refused_before_any_change(fleet, report, journal)
    assert "nfs-1" in report.error


def test_a_rollback_that_needs_a_downgrade_is_refused_before_it_starts(make_fleet, tmp_path):
    fleet = get_fleet(make_fleet, faults={"gitlab-rails-2": ("never-ready", TO)})
    fleet.vars_file.write_text(fleet.vars_file.read_text() + "    zdu_node_ready_timeout: 3\n")
    report, journal = run_upgrade(get_config(fleet, tmp_path / "state"))
    assert report.status is not UpgradeStatus.SUCCEEDED
    assert "rollback to" in report.error and "refused before any change" in report.error, report.error
    events = journal.events(report.upgrade_id)
    rollback_runs = [
        e for e in events if e.kind == "ansible" and ("restore" in e.data["run"] or FROM in e.message)
    ]
    assert not rollback_runs  # GET would fail half-way: nothing was attempted
    # the primary runs the release; the failed node is drained (not reinstalled); the last is untouched
    assert read_node(fleet.directory, "gitlab-rails-1").version == TO
    assert read_node(fleet.directory, "gitlab-rails-3").version == FROM
    servers = {s.name: s for s in HAProxyRuntime(fleet.socket).servers("gitlab-rails")}
    assert not servers["gitlab-rails2"].routed  # drained (and DOWN: it never became ready)
    assert servers["gitlab-rails1"].routed and servers["gitlab-rails3"].routed


def test_the_runtime_api_of_an_haproxy_elsewhere_is_reached_over_tcp(make_fleet, tmp_path):
    # GET's HAProxy runs in a container on haproxy_external: zdu reaches 'stats socket ipv4@...'
    fleet = get_fleet(make_fleet, stats_tcp=True)
    config = structure(fleet.platform_options(), GetPlatformConfig, "platform")
    assert config.haproxy_socket.startswith("tcp://127.0.0.1:")
    target = Target(name="tcp", platform="get", version=FROM)
    platform = GetPlatform(config, PlatformEnv(target=target, state_dir=tmp_path / "state"))
    assert platform.check_mapping() == []
    # checked through the UNIX socket, a second way in: drained and returned in both backends
    local = HAProxyRuntime(fleet.socket)

    def routed(server):
        return [
            s.routed
            for backend in ("gitlab-rails", "gitlab-registry")
            for s in local.servers(backend)
            if s.name.endswith(server)
        ]

    platform.drain_node("gitlab-rails-2")
    assert routed("2") == [False, False]
    platform.return_node("gitlab-rails-2")
    assert routed("2") == [True, True]
    # the negative control: a port nothing answers on is refused with the line HAProxy needs
    nobody = HAProxyRuntime(f"tcp://127.0.0.1:{free_port('127.0.0.1')}")
    with pytest.raises(PlatformError, match=r"'stats socket ipv4@127\.0\.0\.1:\d+ level admin'"):
        nobody.servers("gitlab-rails")


@pytest.mark.parametrize("value", ["tcp://gitlab", "tcp://:9999", "http://haproxy:9999", ""])
def test_a_runtime_api_that_is_neither_a_path_nor_tcp_is_refused_naming_it(value, tmp_path):
    with pytest.raises(ValueError, match="haproxy_socket"):
        GetPlatformConfig(
            url="http://gitlab",
            haproxy_socket=value,
            ansible_dir=tmp_path,
            inventory=tmp_path,
            inventory_vars=tmp_path / "vars.yml",
        )
