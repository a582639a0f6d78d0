"""The tenant model: patches that keep every other byte, FIPS, schema validation."""

from __future__ import annotations

import json

import pytest

from zdu.errors import UsageError
from zdu.model import Version
from zdu_instrumentor.tenant_model import (
    DEFAULT_SCHEMA,
    apply_patch_text,
    inverse_patch,
    validate,
    version_patch,
    write_atomically,
)

# unknown fields, odd spacing, nesting, unicode, a field after the version: all must survive
MODEL = (
    "{\n"
    '    "tenant_id": "c0ffee",\n'
    '    "zeta_unknown":   {"nested": [1, 2, {"b": 1, "a": 2}]},\n'
    '    "gitlab_version": "16.5.0",\n'
    '    "enable_fips": false,\n'
    '    "customer_note": "caf\u00e9 \\u00e9",\n'
    '    "alpha_unknown": null\n'
    "}\n"
)


@pytest.mark.parametrize(
    ("version", "field"),
    [("16.6.0", "gitlab_version"), ("16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a", "prerelease_version")],
)
def test_patch_and_inverse_round_trip_byte_for_byte_with_unknown_fields(version, field):
    model = json.loads(MODEL)
    patch = version_patch(model, Version.parse(version))
    assert patch == [{"op": "replace" if field in model else "add", "path": f"/{field}", "value": version}]
    patched = apply_patch_text(MODEL, patch)
    assert json.loads(patched)[field] == version
    assert list(json.loads(patched)) == [*model, *([field] if field not in model else [])]  # order kept
    untouched = [
        line
        for line in MODEL.splitlines()
        if '"gitlab_version"' not in line and line != '    "alpha_unknown": null'
    ]
    assert all(line in patched.splitlines() for line in untouched)
    restored = apply_patch_text(patched, inverse_patch(model, patch))
    assert restored.encode() == MODEL.encode()


def test_a_prerelease_is_refused_when_fips_is_enabled():
    model = json.loads(MODEL.replace('"enable_fips": false', '"enable_fips": true'))
    with pytest.raises(UsageError, match=r"enable_fips is true.*pre-release"):
        version_patch(model, Version.parse("16.6.0-rc42"))
    assert version_patch(model, Version.parse("16.6.0"))[0]["path"] == "/gitlab_version"  # a release is fine


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.update(gitlab_version=16), "gitlab_version"),
        (lambda m: m.pop("gitlab_version"), "gitlab_version"),
        (lambda m: m.update(enable_fips="yes"), "enable_fips"),
    ],
)
def test_an_invalid_model_is_refused_naming_the_field(tmp_path, change, field):
    model = json.loads(MODEL)
    change(model)
    with pytest.raises(UsageError, match=rf"field {field}:"):
        validate(model, DEFAULT_SCHEMA, tmp_path / "tenant.json")


def test_write_is_atomic_and_keeps_the_previous_version(tmp_path):
    path = tmp_path / "tenant.json"
    path.write_text(MODEL, encoding="utf-8")
    write_atomically(path, MODEL.replace("16.5.0", "16.6.0"))
    assert (tmp_path / "tenant.json.previous").read_text(encoding="utf-8") == MODEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tenant.json", "tenant.json.previous"]
