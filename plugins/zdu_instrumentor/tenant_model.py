"""The tenant model: a JSON document changed only by RFC 6902 patches, its bytes kept where untouched.

zdu touches one top-level field (``gitlab_version`` for a release, ``prerelease_version`` for an
auto-deploy package or release candidate). The patch is applied to the document's *text*: the value's
characters are replaced (or a member is added after the last one, or removed), so unknown fields keep
their order and formatting, and the inverse patch restores the file byte for byte. Every textual edit
is checked against ``jsonpatch`` applied to the parsed document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import jsonschema

from zdu.plugins import UsageError, Version, ZduError, replace_atomically

__all__ = [
    "DEFAULT_SCHEMA",
    "apply_patch_text",
    "inverse_patch",
    "validate",
    "version_field",
    "version_patch",
    "write_atomically",
]

#: The bundled schema: the fields zdu reads or writes, every other field allowed.
DEFAULT_SCHEMA = Path(__file__).parent / "tenant_model.schema.json"

_WHITESPACE = re.compile(r"[ \t\n\r]*")

Patch = list[dict[str, Any]]


@attrs.frozen
class _Member:
    key: str
    key_start: int
    value_start: int
    value_end: int


def _members(text: str) -> tuple[list[_Member], int, int]:
    """The top-level members of the JSON object ``text``, its ``{`` position and its ``}`` position."""
    decoder = json.JSONDecoder()
    index = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[index : index + 1] != "{":
        raise ZduError("the tenant model is not a JSON object")
    opening = index
    index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]
    members: list[_Member] = []
    if text[index] == "}":
        return members, opening, index
    while True:
        key_start = index
        key, index = scanstring(text, index + 1)
        index = _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]
        index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]  # past ':'
        value_start = index
        _value, index = decoder.raw_decode(text, index)
        members.append(_Member(key, key_start, value_start, index))
        index = _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]
        if text[index] == ",":
            index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]
            continue
        return members, opening, index


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _apply_op_text(text: str, op: Mapping[str, Any]) -> str:
    path = str(op["path"])
    if not re.fullmatch(r"/[^/]+", path):
        raise ZduError(f"only top-level paths are patched textually, not {path!r}")
    key = path[1:].replace("~1", "/").replace("~0", "~")
    members, opening, closing = _members(text)
    found = [m for m in members if m.key == key]
    kind = op["op"]
    if kind in ("replace", "add") and found:
        member = found[0]
        return text[: member.value_start] + _encode(op["value"]) + text[member.value_end :]
    if kind == "add":
        if not members:
            return text[: opening + 1] + f"{_encode(key)}: {_encode(op['value'])}" + text[opening + 1 :]
        last = members[-1]
        previous_end = members[-2].value_end if len(members) > 1 else opening + 1
        separator = text[previous_end : last.key_start]
        separator = separator[separator.index(",") + 1 :] if "," in separator else separator
        colon = text[last.key_start + len(_encode(last.key)) : last.value_start]
        member_text = f",{separator}{_encode(key)}{colon}{_encode(op['value'])}"
        return text[: last.value_end] + member_text + text[last.value_end :]
    if kind == "remove" and found:
        member = found[0]
        position = members.index(member)
        if position > 0:
            return text[: members[position - 1].value_end] + text[member.value_end :]
        end = members[1].key_start if len(members) > 1 else closing
        return text[: member.key_start] + text[end:]
    raise ZduError(f"cannot apply {kind} at {path} to the tenant model")


def apply_patch_text(text: str, patch: Sequence[Mapping[str, Any]]) -> str:
    """Apply ``patch`` to the JSON text, keeping every byte it does not change; checked with jsonpatch."""
    expected = jsonpatch.apply_patch(json.loads(text), list(patch))
    for op in patch:
        text = _apply_op_text(text, op)
    if json.loads(text) != expected:
        raise ZduError("the tenant model edit does not match the JSON patch (a zdu bug): nothing written")
    return text


def version_field(version: Version) -> str:
    """``prerelease_version`` for an auto-deploy package or a release candidate, else ``gitlab_version``."""
    return "prerelease_version" if version.is_prerelease else "gitlab_version"


def version_patch(model: Mapping[str, Any], version: Version) -> Patch:
    """The RFC 6902 patch that sets ``version`` in the model; refuses a pre-release with FIPS."""
    field = version_field(version)
    if field == "prerelease_version" and model.get("enable_fips") is True:
        raise UsageError(
            f"tenant model: enable_fips is true, and {version} is a pre-release (prerelease_version): "
            "pre-release packages are not built for FIPS; upgrade to a release"
        )
    return [{"op": "replace" if field in model else "add", "path": f"/{field}", "value": str(version)}]


def inverse_patch(model: Mapping[str, Any], patch: Sequence[Mapping[str, Any]]) -> Patch:
    """The patch that undoes ``patch`` applied to ``model`` (top-level replace and add only)."""
    inverse: Patch = []
    for op in reversed(patch):
        key = str(op["path"])[1:]
        if key in model:
            inverse.append({"op": "replace", "path": op["path"], "value": model[key]})
        else:
            inverse.append({"op": "remove", "path": op["path"]})
    return inverse


def validate(model: Any, schema_path: Path, source: Path) -> None:
    """Raise UsageError naming the first bad field of ``model`` (read from ``source``)."""
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"tenant model schema {schema_path}: {error}") from None
    validator = jsonschema.Draft202012Validator(schema)
    problem = jsonschema.exceptions.best_match(validator.iter_errors(model))
    if problem is not None:
        field = "/".join(str(part) for part in problem.absolute_path)
        if problem.validator == "required" and isinstance(problem.validator_value, list):
            missing = [name for name in problem.validator_value if name not in (problem.instance or {})]
            field = "/".join(filter(None, [field, *missing[:1]]))
        raise UsageError(f"tenant model {source}: field {field or '(root)'}: {problem.message}")


def write_atomically(path: Path, text: str, keep_previous: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically; its current content is kept as ``<path>.previous``."""
    data = path.read_bytes()
    if keep_previous:
        previous = path.with_name(path.name + ".previous")
        replace_atomically(previous, data)
    replace_atomically(path, text)
