"""Secrets never leave a real upgrade: each secret field is planted, used, and found in no byte zdu wrote.

tests/core/test_secrets_never_leave.py plants secrets in a ``sim`` cell. Here the fields that only a
real upgrade uses are planted, each with its own value, and used against real parts by real ``zdu``
processes, in an upgrade that fails and one that succeeds:

* a local fleet (real nginx, demo apps): the ``http`` probe sends a ``PRIVATE-TOKEN`` header whose
  value is a secret;
* the ``prometheus`` and ``apdex`` probes query a real Prometheus (scraping the fleet) with their own
  ``bearer_token``, through a front that answers only the two planted tokens (Prometheus itself
  checks none), so the upgrade that succeeds proves that both tokens were sent;
* the ``sql`` runner migrates a real PostgreSQL as a role whose password is a secret; the failing
  upgrade's migration fails with an error quoting that password, as a database's error may quote a
  statement;
* a get fleet (real HAProxy, real ansible-playbook, demo-app nodes): the platform's ``url`` carries a
  password (the probe sends it as Basic credentials) and ``version_token`` is sent to every node's
  version endpoint; the failing upgrade is a release whose first node answers 5xx.

Then stdout and stderr of every ``zdu`` run, ``zdu report`` (text, JSON, HTML) and ``zdu status`` of
every upgrade, the journal and every file of the state directories and of the fleet (generated
nginx, HAProxy and Ansible configuration included) are searched for the planted secrets.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import secrets
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import write_config
from tests.e2e.observability import FleetTargets, running_prometheus
from tests.get.conftest import FROM as GET_FROM
from tests.get.conftest import TO as GET_TO
from tests.get.conftest import get_config, make_fleet, requires_haproxy  # noqa: F401 - make_fleet: the fixture
from tests.leaks import SYSTEM_PATH, files_under, leaks, report_outputs, run_zdu
from tests.migrations.conftest import postgres_connection, postgres_server, write_migrations  # noqa: F401
from zdu.journal import Journal
from zdu.secret import REDACTED
from zdu_get.node import read_node

pytestmark = pytest.mark.slow

HEADER_TOKEN = "s3cr3t-PLANTED-header-token"
PROMETHEUS_TOKEN = "s3cr3t-PLANTED-prometheus-token"
APDEX_TOKEN = "s3cr3t-PLANTED-apdex-token"
DATABASE_PASSWORD = "s3cr3t-PLANTED-database-password"
VERSION_TOKEN = "s3cr3t-PLANTED-version-token"
URL_PASSWORD = "s3cr3t-PLANTED-url-password"

ERROR_RATIO = (
    '(sum(rate(http_requests_total{version="$release",status=~"5.."}[5s])) or vector(0)) / '
    'sum(rate(http_requests_total{version="$release"}[5s]))'
)

#: the regular migration that fails in the first upgrade, quoting the role's password
FAILING_CHECK = (
    f"DO $$ BEGIN RAISE EXCEPTION 'the replica refused the password %', '{DATABASE_PASSWORD}'; END $$;\n"
)


@contextlib.contextmanager
def bearer_front(upstream: str, tokens: Mapping[str, str]) -> Iterator[tuple[str, Counter[str]]]:
    """An HTTP front for ``upstream`` that passes on only requests bearing one of ``tokens`` (name: token).

    Yields its URL and a count of the requests it passed, per token name (``refused``: the others,
    answered 401).
    """
    accepted = {f"Bearer {token}": name for name, token in tokens.items()}
    seen: Counter[str] = Counter()

    class Front(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = accepted.get(self.headers.get("Authorization", ""))
            if name is None:
                seen["refused"] += 1
                self._answer(401, b'{"status": "error", "errorType": "unauthorized", "error": "no token"}')
                return
            seen[name] += 1
            try:
                with urllib.request.urlopen(upstream + self.path, timeout=5) as answer:
                    status, body = answer.status, answer.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            self._answer(status, body)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def planted_database(server: Any) -> str:
    """A database owned by a new role whose password is :data:`DATABASE_PASSWORD`; its URL."""
    role = f"planted_{secrets.token_hex(4)}"
    with postgres_connection(server.url()) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{DATABASE_PASSWORD}'")
        connection.execute(f"CREATE DATABASE {role} OWNER {role}")
    return f"postgresql://{role}:{DATABASE_PASSWORD}@127.0.0.1:{server.port}/{role}"


def local_config(directory: Path, prometheus_front: str, database: str, migrations: Path) -> Path:
    """A local fleet's rolling upgrade with every planted field: http headers, bearer tokens, a database."""
    config = write_config(directory, options={"max_surge": 1, "max_unavailable": 0}, replicas=2)
    text = config.read_text()
    http_probe = '[[probes]]\nname = "http"\n'
    assert text.count(http_probe) == 1
    text = text.replace(http_probe, f'{http_probe}headers = {{ PRIVATE-TOKEN = "{HEADER_TOKEN}" }}\n')
    text += (
        "[[probes]]\n"
        'name = "prometheus"\n'
        f'url = "{prometheus_front}"\n'
        "interval = 1\n"
        f'bearer_token = "{PROMETHEUS_TOKEN}"\n'
        "[[probes.queries]]\n"
        'name = "error_ratio"\n'
        f"query = {json.dumps(ERROR_RATIO)}\n"
        "max = 0.005\n"
        'no_data = "pass"\n'  # before the release serves, there is nothing to judge
        "[[probes]]\n"
        'name = "apdex"\n'
        f'url = "{prometheus_front}"\n'
        "interval = 1\n"
        f'bearer_token = "{APDEX_TOKEN}"\n'
        "selector = 'version=\"$release\"'\n"
        'window = "5s"\n'
        'no_data = "pass"\n'
        "[migrations]\n"
        'name = "sql"\n'
        f'database = "{database}"\n'
        f'path = "{migrations}"\n'
    )
    config.write_text(text)
    return config


def test_planted_probe_tokens_and_database_password_leave_no_trace_in_a_local_upgrade(
    tmp_path: Path,
    fleet: Any,
    postgres_server: Any,  # noqa: F811 - the fixture
) -> None:
    database = planted_database(postgres_server)
    migrations = write_migrations(
        tmp_path / "migrations",
        pre={
            "20260101000001_create_widgets": "CREATE TABLE widgets (id integer PRIMARY KEY);\n",
            "20260101000002_check_replica": FAILING_CHECK,
        },
        post={"20260101000003_add_widget_name": "ALTER TABLE widgets ADD COLUMN name text;\n"},
    )
    outputs: list[bytes] = []
    tokens = {"prometheus": PROMETHEUS_TOKEN, "apdex": APDEX_TOKEN}
    with (
        running_prometheus(tmp_path / "prometheus") as prometheus,
        bearer_front(prometheus.url, tokens) as (front, seen),
    ):
        config = local_config(tmp_path, front, database, migrations)
        platform = fleet(config)
        with FleetTargets(prometheus, platform.state_dir / "state.json"):
            failed = run_zdu("upgrade", "--json", str(config), cwd=tmp_path, path=SYSTEM_PATH)
            outputs += [failed.stdout, failed.stderr]
            assert failed.returncode == 1, failed.stderr.decode()
            # the check is fixed; the same upgrade again
            (migrations / "db" / "migrate" / "20260101000002_check_replica.sql").write_text("SELECT 1;\n")
            succeeded = run_zdu("upgrade", "--json", str(config), cwd=tmp_path, path=SYSTEM_PATH)
            outputs += [succeeded.stdout, succeeded.stderr]
            assert succeeded.returncode == 0, succeeded.stderr.decode()

    journal = Journal(tmp_path / "state" / "journal.sqlite")
    upgrades = journal.upgrades()
    assert [u.status.value for u in upgrades] in (["succeeded", "failed"], ["succeeded", "rolled_back"])
    outputs += report_outputs(journal, tmp_path, path=SYSTEM_PATH)

    # every planted field was used against the real part
    assert seen["prometheus"] > 0 and seen["apdex"] > 0 and seen["refused"] == 0, seen
    with postgres_connection(database) as connection:  # as the planted role, with its password
        recorded = connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        columns = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets'"
        ).fetchall()
    assert [str(row[0]) for row in recorded] == ["20260101000001", "20260101000002", "20260101000003"]
    assert ("name",) in columns
    succeeded_id = next(u.id for u in upgrades if u.status.value == "succeeded")
    measured = {
        e.data.get("probe") for e in journal.events(succeeded_id) if e.kind.startswith("measurement-")
    }
    assert {"http", "prometheus", "apdex"} <= measured, measured

    files = files_under(tmp_path / "state", tmp_path / "default-state")
    assert any(p.name == "journal.sqlite" for p in files)
    assert any(p.name == "nginx.conf" for p in files)  # the generated configuration is searched too
    found = leaks(outputs, files)
    assert found == [], found
    # the failed migration's error did quote the password: redacted
    failure = next(u for u in upgrades if u.status.value != "succeeded")
    assert f"the replica refused the password {REDACTED}" in (failure.error or ""), failure.error


def _toml(config: Mapping[str, Any]) -> str:
    """A configuration of tables (and arrays of tables) of plain values, as TOML."""
    lines: list[str] = []
    for name, value in config.items():
        tables = value if isinstance(value, list) else [value]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            lines += [f"{key} = {json.dumps(item)}" for key, item in table.items()]
    return "\n".join(lines) + "\n"


@requires_haproxy
def test_a_planted_version_token_and_url_password_leave_no_trace_in_a_get_upgrade(
    tmp_path: Path,
    make_fleet: Any,  # noqa: F811 - the fixture
) -> None:
    fleet = make_fleet(components={}, rails=("rails-1", "rails-2"), faults={"rails-1": ("5xx", GET_TO)})
    # playbooks that can install an older package, and zdu told so: the failed upgrade rolls back
    fleet.vars_file.write_text(fleet.vars_file.read_text() + "    gitlab_allow_downgrade: true\n")
    host = fleet.url.removeprefix("http://")
    raw = get_config(
        fleet,
        tmp_path / "state",
        platform={"url": f"http://root:{URL_PASSWORD}@{host}", "version_token": VERSION_TOKEN},
        allow_downgrade=True,
    )
    config = tmp_path / "get.toml"
    config.write_text(_toml(raw))
    outputs: list[bytes] = []

    failed = run_zdu("upgrade", "--json", str(config), cwd=tmp_path, path=SYSTEM_PATH)
    outputs += [failed.stdout, failed.stderr]
    assert failed.returncode == 1, failed.stderr.decode()
    # the release is fixed: the first node's package no longer answers 5xx
    node = fleet.directory / "nodes" / "rails-1.json"
    node.write_text(json.dumps({**json.loads(node.read_text()), "fault": "", "fault_version": ""}))
    succeeded = run_zdu("upgrade", "--json", str(config), cwd=tmp_path, path=SYSTEM_PATH)
    outputs += [succeeded.stdout, succeeded.stderr]
    assert succeeded.returncode == 0, succeeded.stderr.decode()

    journal = Journal(tmp_path / "state" / "journal.sqlite")
    upgrades = journal.upgrades()
    assert [u.status.value for u in upgrades] == ["succeeded", "rolled_back"]
    outputs += report_outputs(journal, tmp_path, path=SYSTEM_PATH)
    assert "probe http" in (upgrades[1].error or ""), upgrades[1].error
    assert all(read_node(fleet.directory, n).version == GET_TO for n in fleet.rails)
    assert GET_FROM != GET_TO

    files = files_under(tmp_path / "state", tmp_path / "default-state", fleet.directory)
    assert any(p.name == "vars.yml" for p in files)  # the inventory zdu rewrote
    found = leaks(outputs, files)
    assert found == [], found
