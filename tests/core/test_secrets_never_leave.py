"""Secrets never leave: a planted secret is in no byte zdu writes, whether the upgrade fails or not.

Real ``zdu`` processes upgrade a ``sim`` cell with a ``gitlab-rake`` runner and a ``qa`` probe whose
commands are real child processes that print the secrets they know, a webhook and a Pushgateway
(with a password in its URL) served by a real HTTP server. Then every byte of stdout, stderr, the
journal, the reports (text, JSON, HTML) and every file under the state directory is searched.
"""

from __future__ import annotations

import http.server
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.leaks import MARK, files_under, leaks, report_outputs, run_zdu
from zdu.config import load_config
from zdu.errors import ConfigError
from zdu.journal import Journal
from zdu.registry import get_plugin_manager
from zdu.secret import REDACTED, RedactingFilter, Secret, redact, register_secret

QA_TOKEN = "s3cr3t-PLANTED-qa-token"
PUSH_PASSWORD = "s3cr3t-PLANTED-push"

RAKE = """
import os, sys, pathlib
secrets = pathlib.Path(sys.argv[1]).read_text().split()
for secret in secrets:
    print("migrating with", secret, flush=True)
print("connecting to postgresql://gitlab:%s@db.internal:5432/gitlabhq" % "s3cr3t-" "PLANTED-dbpass")
print("error: bad token", secrets[0], file=sys.stderr, flush=True)
sys.exit(1 if pathlib.Path(sys.argv[2]).exists() else 0)
"""

QA = """
import os
print("qa token is", os.environ["QA_TOKEN"], flush=True)
"""


class _Sink(http.server.BaseHTTPRequestHandler):
    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_GET = _ok

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _toml_list(items: list[str]) -> str:
    return json.dumps(items)


def _config(tmp: Path, port: int, version: str) -> tuple[Path, list[str]]:
    webhook = f"http://127.0.0.1:{port}/hooks/s3cr3t-PLANTED-webhook"
    pushgateway = f"http://pusher:{PUSH_PASSWORD}@127.0.0.1:{port}"
    secrets_file = tmp / "known-secrets.txt"
    secrets_file.write_text(f"{QA_TOKEN} {webhook} {PUSH_PASSWORD}\n", encoding="utf-8")
    (tmp / "rake.py").write_text(RAKE, encoding="utf-8")
    (tmp / "qa.py").write_text(QA, encoding="utf-8")
    rake = [sys.executable, str(tmp / "rake.py"), str(secrets_file), str(tmp / "fail-migrations")]
    config = tmp / "cell.toml"
    config.write_text(
        f"""
[target]
name = "cell"
platform = "sim"
version = "16.5.0"

[platform]
replicas = 2
start_seconds = 1
drain_seconds = 1
time_scale = 0.01

[release]
version = "{version}"

[strategy]
name = "rolling"

[[probes]]
name = "qa"
command = {_toml_list([sys.executable, str(tmp / "qa.py")])}
at = ["first-new"]
env = {{ QA_TOKEN = "{QA_TOKEN}" }}

[migrations]
name = "gitlab-rake"
command = {_toml_list(rake)}
status_command = []
background_status_command = []

[upgrade]
state_dir = "state"
webhooks = ["{webhook}"]
pushgateway = "{pushgateway}"
""",
        encoding="utf-8",
    )
    return config, [QA_TOKEN, webhook, PUSH_PASSWORD]


def test_a_planted_secret_is_in_no_byte_of_output_journal_reports_or_state(
    tmp_path: Path, server: int
) -> None:
    # the migration command also prints a URL whose password no configuration holds
    config, _ = _config(tmp_path, server, "16.6.0")
    outputs: list[bytes] = []

    (tmp_path / "fail-migrations").touch()
    failed = run_zdu("upgrade", "--json", str(config), cwd=tmp_path)
    outputs += [failed.stdout, failed.stderr]
    assert failed.returncode == 1, failed.stderr.decode()
    (tmp_path / "fail-migrations").unlink()
    succeeded = run_zdu("upgrade", "--json", str(config), cwd=tmp_path)
    outputs += [succeeded.stdout, succeeded.stderr]
    assert succeeded.returncode == 0, succeeded.stderr.decode()

    journal = Journal(tmp_path / "state" / "journal.sqlite")
    upgrades = journal.upgrades()
    assert [u.status.value for u in upgrades] in (["succeeded", "failed"], ["succeeded", "rolled_back"])
    outputs += report_outputs(journal, tmp_path)

    # the commands really ran and their output really was recorded, redacted
    messages = [e.message for u in upgrades for e in journal.events(u.id)]
    assert any(m.startswith(f"migrating with {REDACTED}") for m in messages), messages
    assert any(f"postgresql://{REDACTED}@db.internal" in m for m in messages), messages
    assert b"qa token is " + REDACTED.encode() in b"".join(
        json.dumps(e.data).encode() for u in upgrades for e in journal.events(u.id)
    ) or any("qa token is ***" in m for m in messages)

    files = files_under(tmp_path / "state", tmp_path / "default-state")
    assert any(p.name == "journal.sqlite" for p in files)
    found = leaks(outputs, files)
    assert found == [], found


# -- the pieces -----------------------------------------------------------------------------------


def test_redact_removes_registered_secrets_and_url_credentials() -> None:
    register_secret("s3cr3t-PLANTED-unit")
    text = "token s3cr3t-PLANTED-unit at https://user:pa55@host/x and https://tok3n@host2"
    assert redact(text) == f"token {REDACTED} at https://{REDACTED}@host/x and https://{REDACTED}@host2"
    assert redact({"k s3cr3t-PLANTED-unit": ["s3cr3t-PLANTED-unit", Secret("other-value")]}) == {
        f"k {REDACTED}": [REDACTED, REDACTED]
    }
    assert redact("a") == "a"


def test_the_log_filter_redacts_messages_arguments_and_tracebacks() -> None:
    Secret("s3cr3t-PLANTED-log")
    record = logging.LogRecord("zdu", logging.INFO, __file__, 1, "value %s", ("s3cr3t-PLANTED-log",), None)
    try:
        raise ValueError("s3cr3t-PLANTED-log")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert MARK not in logging.Formatter().format(record)


def _plain_config(**sections: Any) -> dict[str, Any]:
    return {
        "target": {"name": "cell", "platform": "sim", "version": "16.5.0"},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling"},
        **sections,
    }


@pytest.mark.parametrize(
    ("sections", "secret"),
    [
        ({"probes": [{"name": "http", "headers": {"PRIVATE-TOKEN": 12345}}]}, "12345"),
        ({"probes": [{"name": "http", "headers": ["s3cr3t-PLANTED-h"]}]}, "s3cr3t-PLANTED-h"),
        (
            {"probes": [{"name": "qa", "command": ["true"], "env": {"T": ["s3cr3t-PLANTED-q"]}}]},
            "s3cr3t-PLANTED-q",
        ),
        ({"upgrade": {"webhooks": ["ftp://s3cr3t-PLANTED-w"]}}, "s3cr3t-PLANTED-w"),
        ({"upgrade": {"webhooks": "http://s3cr3t-PLANTED-one"}}, "s3cr3t-PLANTED-one"),
        ({"migrations": {"name": "sql", "database": 98765}}, "98765"),
        (
            {
                "probes": [
                    {"name": "prometheus", "url": "http://p:9090", "bearer_token": ["s3cr3t-PLANTED-p"]}
                ]
            },
            "s3cr3t-PLANTED-p",
        ),
        ({"probes": [{"name": "apdex", "bearer_token": {"x": "s3cr3t-PLANTED-a"}}]}, "s3cr3t-PLANTED-a"),
    ],
)
def test_a_bad_secret_field_names_the_field_never_the_value(sections: dict[str, Any], secret: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_plain_config(**sections), get_plugin_manager())
    assert secret not in str(error.value)
    assert secret not in "\n".join(error.value.problems)


def test_every_secret_field_of_every_first_party_plugin_is_redacted_from_the_journal(tmp_path: Path) -> None:
    """Each configuration field typed ``Secret`` (or holding a URL with credentials) is planted."""
    manager = get_plugin_manager()
    planted = {
        "sim": _plain_config(
            probes=[
                {"name": "http", "headers": {"PRIVATE-TOKEN": "s3cr3t-PLANTED-header"}},
                {"name": "qa", "command": ["true"], "env": {"TOKEN": "s3cr3t-PLANTED-qaenv"}},
                {"name": "apdex", "url": "http://a:1", "bearer_token": "s3cr3t-PLANTED-apdex"},
            ],
            migrations={
                "name": "sql",
                "path": str(tmp_path),
                "database": "postgresql://u:s3cr3t-PLANTED-sql@db/x",
            },
            upgrade={
                "state_dir": str(tmp_path),
                "webhooks": ["https://hooks.example/s3cr3t-PLANTED-hook"],
                "pushgateway": "https://u:s3cr3t-PLANTED-pgw@push.example",
            },
        ),
        "get": {
            **_plain_config(
                platform={
                    "url": "https://root:s3cr3t-PLANTED-url@gitlab.example",
                    "haproxy_socket": str(tmp_path / "h.sock"),
                    "ansible_dir": str(tmp_path),
                    "inventory": str(tmp_path / "inventory"),
                    "inventory_vars": str(tmp_path / "vars.yml"),
                    "version_token": "s3cr3t-PLANTED-version",
                },
                upgrade={"state_dir": str(tmp_path)},
            ),
            "target": {"name": "cell", "platform": "get", "version": "16.5.0"},
            "strategy": {"name": "get"},
        },
    }
    prometheus = _plain_config(
        probes=[
            {
                "name": "prometheus",
                "url": "http://p:9090",
                "queries": [{"name": "errors", "query": "up", "max": 1}],
                "bearer_token": "s3cr3t-PLANTED-prom",
            }
        ],
        upgrade={"state_dir": str(tmp_path)},
    )
    journal = Journal(tmp_path / "journal.sqlite")
    for number, raw in enumerate([*planted.values(), prometheus]):
        try:
            config = load_config(raw, manager)
        except ConfigError as error:  # an option these tests do not know of: say which
            pytest.fail(f"{number}: {error}")
        upgrade_id = journal.begin(
            target=f"cell-{number}",
            from_version="16.5.0",
            to_version="16.6.0",
            strategy="x",
            config=config.redacted(),
        )
        journal.record(upgrade_id, "x", "note", f"using {json.dumps(raw)}", {"raw": raw})
        journal.finish(upgrade_id, journal.get(upgrade_id).status, error=f"failed with {raw}")  # type: ignore[union-attr]
    for path in tmp_path.glob("journal.sqlite*"):
        assert MARK.encode() not in path.read_bytes(), path
