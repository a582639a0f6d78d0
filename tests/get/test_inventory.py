"""The inventory vars file: only the version line changes; host patterns."""

from __future__ import annotations

import difflib

import pytest

from zdu.errors import UsageError
from zdu_get.inventory import hosts_matching, read_inventory_version, set_inventory_version

VARS = (
    "all:\r\n"
    "  vars:\r\n"
    "    # Ansible settings\r\n"
    "    ansible_user: 'ubuntu'\r\n"
    "    gitlab_version: '16.5.0'  # bumped by release tooling\r\n"
    '    gitlab_version_comment: "keep: gitlab_version: 1"\r\n'
    "    prometheus_version: 2.48.0\r\n"
    "\r\n"
    '    unicode: "caf\u00e9"\r\n'
)


def test_only_the_version_line_changes_byte_for_byte(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_bytes(VARS.encode())
    assert set_inventory_version(path, "16.6.0") is True
    after = path.read_bytes()
    before_lines = VARS.encode().splitlines(keepends=True)
    after_lines = after.splitlines(keepends=True)
    assert len(before_lines) == len(after_lines)
    changed = [(b, a) for b, a in zip(before_lines, after_lines, strict=True) if b != a]
    assert changed == [
        (
            b"    gitlab_version: '16.5.0'  # bumped by release tooling\r\n",
            b"    gitlab_version: '16.6.0'  # bumped by release tooling\r\n",
        )
    ], list(difflib.diff_bytes(difflib.unified_diff, before_lines, after_lines))
    assert read_inventory_version(path) == "16.6.0"
    assert set_inventory_version(path, "16.6.0") is False  # idempotent
    set_inventory_version(path, "16.5.0")
    assert path.read_bytes() == VARS.encode()


def test_an_unquoted_version_stays_unquoted_and_keeps_no_stray_file(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("all:\n  vars:\n    gitlab_version: 16.5.0\n", encoding="utf-8")
    set_inventory_version(path, "16.6.0")
    assert path.read_text(encoding="utf-8") == "all:\n  vars:\n    gitlab_version: 16.6.0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["vars.yml"]


def test_a_vars_file_without_the_version_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("all:\n  vars:\n    prefix: x\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"vars\.yml.*gitlab_version.*found no"):
        set_inventory_version(path, "16.6.0")


INVENTORY = {
    "_meta": {"hostvars": {"consul-1": {}, "rails-1": {}, "rails-2": {}, "sidekiq-1": {}}},
    "all": {"children": ["ungrouped", "consul", "gitlab_rails", "sidekiq"]},
    "consul": {"hosts": ["consul-1"]},
    "gitlab_rails": {"hosts": ["rails-1", "rails-2"]},
    "sidekiq": {"hosts": ["sidekiq-1"]},
}


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("gitlab_rails", ["rails-1", "rails-2"]),
        ("praefect", []),
        ("rails-2", ["rails-2"]),
        ("consul:sidekiq", ["consul-1", "sidekiq-1"]),
        ("gitlab_rails:!rails-1", ["rails-2"]),
        ("rails-*", ["rails-1", "rails-2"]),
    ],
)
def test_host_patterns(pattern, hosts):
    assert hosts_matching(INVENTORY, pattern) == hosts
