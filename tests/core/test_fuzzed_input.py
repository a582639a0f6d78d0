"""Fuzzed input: every input ends in a result or a zdu error naming the field, never another exception.

Property-based (hypothesis), with a bounded number of examples and a derandomized search so that CI
runs the same examples every time. Covered: configuration loading (mappings and TOML files, UTF-16,
deeply nested arrays), version parsing, tenant model patches, ``zdu plan --offline`` snapshots, and
the journal's reader. The last test runs ``zdu plan`` on bad files and reads what it prints.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zdu.config import load_config
from zdu.errors import ConfigError, JournalError, UsageError, ZduError
from zdu.journal import Journal
from zdu.model import Version
from zdu.registry import get_plugin_manager
from zdu_instrumentor.strategy import InstrumentorConfig, InstrumentorStrategy
from zdu_instrumentor.tenant_model import apply_patch_text, inverse_patch, version_patch
from zdu_kubernetes.api import OfflineApi

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

MANAGER = get_plugin_manager()

# -- configuration ---------------------------------------------------------------------------------

_names = st.sampled_from(
    [
        "target",
        "platform",
        "release",
        "strategy",
        "layers",
        "probes",
        "migrations",
        "upgrade",
        "name",
        "version",
        "replicas",
        "max_surge",
        "state_dir",
        "webhooks",
        "headers",
        "env",
        "command",
        "url",
        "bearer_token",
        "database",
        "rps",
        "failure_limit",
        "sim",
        "rolling",
        "sticky-nginx",
        "http",
        "qa",
        "gitlab-rake",
        "sql",
        "time_scale",
        "layers",
    ]
) | st.text(max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["16.5.0", "16.6.0", "sim", "rolling", "http", "sql", "qa", "cell", "/tmp/x"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=5),
    max_leaves=25,
)


def _valid() -> dict[str, Any]:
    return {
        "target": {"name": "cell", "platform": "sim", "version": "16.5.0"},
        "platform": {"replicas": 2},
        "release": {"version": "16.6.0"},
        "strategy": {"name": "rolling"},
        "probes": [{"name": "http", "rps": 10}],
        "upgrade": {"state_dir": "/tmp/zdu-fuzz"},
    }


def _loads_or_names_a_field(source: Any) -> None:
    try:
        load_config(source, MANAGER)
    except ConfigError as error:
        assert error.problems, "a ConfigError with no problem line"
        for line in error.problems:
            assert len(line) < 2000, line[:200]
    except UsageError as error:  # a version or name error that is reported on its own
        assert str(error)


@FUZZ
@given(st.dictionaries(_names, _values, max_size=8))
def test_any_mapping_loads_or_names_a_field(raw: dict[str, Any]) -> None:
    _loads_or_names_a_field(raw)


@FUZZ
@given(
    section=st.sampled_from(["target", "platform", "release", "strategy", "upgrade", "migrations"]),
    key=_names,
    value=_values,
)
def test_a_valid_configuration_with_one_field_changed_loads_or_names_a_field(
    section: str, key: str, value: Any
) -> None:
    raw = _valid()
    raw.setdefault(section, {})[key] = value
    _loads_or_names_a_field(raw)


@FUZZ
@given(index=st.integers(0, 3), key=_names, value=_values)
def test_a_probe_with_one_field_changed_loads_or_names_a_field(index: int, key: str, value: Any) -> None:
    raw = _valid()
    raw["probes"] = [
        {"name": "http"},
        {"name": "qa", "command": ["true"]},
        {"name": "apdex", "url": "http://a:1"},
        {"name": "prometheus", "url": "http://p:1", "queries": [{"name": "q", "query": "up", "max": 1}]},
    ][index : index + 1]
    raw["probes"][0][key] = value
    _loads_or_names_a_field(raw)


_toml_text = st.text(alphabet=string.printable + "é€\x00\ufeff", max_size=200)


@FUZZ
@given(text=_toml_text, encoding=st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1"]))
def test_any_file_loads_or_names_the_file(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "cell.toml"
    path.write_bytes(text.encode(encoding, errors="replace"))
    _loads_or_names_a_field(path)


@FUZZ
@given(depth=st.integers(1, 20000), kind=st.sampled_from(["[", "{ a = ", "[{ a = "]))
def test_deeply_nested_files_load_or_name_the_file(tmp_path: Path, depth: int, kind: str) -> None:
    closing = {"[": "]", "{ a = ": "}", "[{ a = ": "}]"}[kind]
    path = tmp_path / "cell.toml"
    path.write_text(f"[target]\nname = {kind * depth}1{closing * depth}\n", encoding="utf-8")
    _loads_or_names_a_field(path)


def test_a_deeply_nested_mapping_names_a_field() -> None:
    value: Any = 1
    for _ in range(5000):
        value = [value]
    raw = _valid()
    raw["platform"]["replicas"] = value
    with pytest.raises(ConfigError) as error:
        load_config(raw, MANAGER)
    assert any(line.startswith("platform") for line in error.value.problems), error.value.problems


# -- versions --------------------------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.text(max_size=40),
        st.from_regex(r"\A\d{1,6000}\.\d{1,3}\.\d{1,6000}(-rc\d{1,5})?(-ee|-ce)?\Z"),
        st.integers(),
        st.none(),
    )
)
def test_any_text_parses_as_a_version_or_a_version_error(text: Any) -> None:
    try:
        version = Version.parse(text)
    except ZduError as error:
        assert len(str(error)) < 1000
    else:
        assert Version.parse(str(version)) == version


# -- tenant model patches --------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(
    model=st.dictionaries(
        st.sampled_from(["gitlab_version", "prerelease_version", "enable_fips", "tenant_id"])
        | st.text(max_size=6),
        _json_values,
        max_size=5,
    ),
    indent=st.sampled_from([None, 0, 2, "\t"]),
    version=st.sampled_from(["16.6.0", "16.6.0-rc1", "16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a"]),
)
def test_tenant_model_patches_apply_and_undo_byte_for_byte_or_refuse(
    model: dict[str, Any], indent: Any, version: str
) -> None:
    text = json.dumps(model, indent=indent, ensure_ascii=False)
    try:
        patch = version_patch(model, Version.parse(version))
        patched = apply_patch_text(text, patch)
    except ZduError:
        return
    field = patch[0]["path"][1:]
    assert json.loads(patched)[field] == version
    undone = apply_patch_text(patched, inverse_patch(model, patch))
    assert json.loads(undone) == model
    if isinstance(model.get(field, ""), str):  # a version field holds a string: restored byte for byte
        assert undone == text


@FUZZ
@given(text=st.text(max_size=60) | st.sampled_from(["[" * 5000, '{"a": ' * 3000]))
def test_a_tenant_model_file_of_anything_reads_or_names_the_field(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tenant.json"
    path.write_text(text, encoding="utf-8")
    options = InstrumentorConfig(tenant_model=path, command=["true", "{stage}", "{tenant_model}"])
    strategy = InstrumentorStrategy(options)
    try:
        strategy._patched(Version.parse("16.6.0"))
    except UsageError as error:
        assert "tenant_model" in str(error) or "tenant model" in str(error)
    except ZduError:
        pass


# -- offline snapshots -----------------------------------------------------------------------------


@FUZZ
@given(
    data=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=8)
        | st.sampled_from(["Deployment", "Service", "Ingress", "Job", "metadata", "name", "items"]),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["kind", "metadata", "name", "items", "spec"]), inner, max_size=4
            )
        ),
        max_leaves=20,
    ),
)
def test_any_snapshot_loads_or_is_refused_naming_the_file(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        OfflineApi(path, "gitlab")
    except UsageError as error:
        assert str(path) in str(error)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[" * 100000, "é".encode("latin-1"), b"{}"])
def test_snapshot_files_that_are_no_json_are_refused_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=r"state\.json"):
        OfflineApi(path, "gitlab")


# -- the journal's reader --------------------------------------------------------------------------


def _read_everything(journal: Journal) -> None:
    for record in journal.upgrades(limit=100):
        journal.get(record.id)
        journal.events(record.id)


@FUZZ
@given(content=st.binary(max_size=300))
def test_a_garbage_journal_file_is_a_journal_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(content)
    try:
        _read_everything(Journal(path))
    except JournalError as error:
        assert str(path) in str(error)


_cells = (
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.binary(max_size=4)
    | st.sampled_from(["running", "succeeded", "failed", "{}", "[]", '{"a": 1}', '["x"]', "not json"])
)


@FUZZ
@given(
    upgrade=st.fixed_dictionaries(
        {
            c: _cells
            for c in (
                "from_version",
                "status",
                "started_at",
                "finished_at",
                "owner_pid",
                "owner_started",
                "config",
                "report",
                "error",
                "layers",
                "phase",
            )
        }
    ),
    event=st.fixed_dictionaries({c: _cells for c in ("at", "phase", "kind", "message", "data")}),
)
def test_a_journal_with_damaged_rows_reads_or_is_a_journal_error(
    tmp_path: Path, upgrade: dict[str, Any], event: dict[str, Any]
) -> None:
    path = tmp_path / "journal.sqlite"
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    journal = Journal(path)
    upgrade_id = journal.begin(target="cell", from_version="1.0.0", to_version="1.1.0", strategy="rolling")
    journal.record(upgrade_id, "rollout", "note", "a note", {"a": 1})
    db = sqlite3.connect(path)
    db.execute("DROP INDEX one_upgrade_in_progress_per_target")
    for table, row in (("upgrades", upgrade), ("events", event)):
        for column, value in row.items():
            with contextlib.suppress(sqlite3.IntegrityError):  # NOT NULL: SQLite keeps that promise
                db.execute(f"UPDATE {table} SET {column} = ?", (value,))  # fixed table and column names
    db.commit()
    db.close()
    try:
        _read_everything(journal)
        journal.check_free("cell")
    except JournalError as error:
        assert str(path) in str(error)
    except ZduError:
        pass  # busy, or the like: a zdu error


# -- the command line on bad files -----------------------------------------------------------------

ZDU = str(Path(sys.executable).parent / "zdu")


def _bad_files(directory: Path) -> dict[str, tuple[bytes, str]]:
    """Each bad file, and the field (or file) its error must name."""
    valid = (
        '[target]\nname = "cell"\nplatform = "sim"\nversion = "16.5.0"\n[release]\nversion = "16.6.0"\n'
        '[strategy]\nname = "rolling"\n'
    )
    return {
        "binary.toml": (bytes(range(256)) * 4, "binary.toml"),
        "utf16.toml": (valid.encode("utf-16"), "UTF-16"),
        "nested.toml": (("[target]\nname = " + "[" * 10000 + "]" * 10000 + "\n").encode(), "nested.toml"),
        "nested-value.toml": (
            (valid + "[platform]\nreplicas = " + "[" * 400 + "1" + "]" * 400 + "\n").encode(),
            "platform.replicas",
        ),
        "wrong-types.toml": (valid.replace('"16.6.0"', "16").encode(), "release.version"),
        "wrong-table.toml": (valid.replace("[strategy]\n", "strategy = 3\n[x]\n").encode(), "strategy"),
        "huge-value.toml": (
            (valid + "[platform]\nreplicas = '" + "x" * 100000 + "'\n").encode(),
            "platform.replicas",
        ),
    }


def test_zdu_plan_on_any_bad_file_exits_2_with_a_few_lines_naming_the_field(tmp_path: Path) -> None:
    for name, (content, named) in _bad_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(content)
        done = subprocess.run(
            [ZDU, "plan", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"ZDU_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        lines = done.stderr.splitlines()
        assert done.returncode == 2, f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, f"{name}: {done.stderr[-2000:]}"
        assert 1 <= len(lines) <= 5, f"{name}: {len(lines)} lines: {lines[:6]}"
        assert all(len(line) < 400 for line in lines), f"{name}: {[line[:100] for line in lines]}"
        assert named in done.stderr, f"{name}: {done.stderr}"
