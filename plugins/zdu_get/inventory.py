"""The environment's Ansible inventory: the version line of its vars file, and host patterns.

GET keeps an environment's settings in a YAML vars file (``inventory/vars.yml``), ``gitlab_version``
among them. zdu changes that one value and keeps every other byte of the file (comments, order,
quoting, line endings), so that a review of the change shows one line.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zdu.plugins import UsageError

__all__ = ["hosts_matching", "read_inventory_version", "set_inventory_version"]

_LINE = re.compile(
    r"^(?P<lead>[ \t]*gitlab_version[ \t]*:[ \t]*)(?P<quote>[\"']?)(?P<value>[^\"'#\r\n]*?)(?P=quote)"
    r"(?P<tail>[ \t]*(?:#[^\r\n]*)?)(?=\r?$)",
    re.MULTILINE,
)


def read_inventory_version(path: Path) -> str:
    """The ``gitlab_version`` the vars file sets; UsageError when it sets none or several."""
    return _match(path, path.read_bytes().decode("utf-8"))["value"]


def _match(path: Path, text: str) -> re.Match[str]:
    matches = list(_LINE.finditer(text))
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)}"
        raise UsageError(
            f"{path}: expected one 'gitlab_version: ...' line in the inventory vars file, found {found}"
        )
    return matches[0]


def set_inventory_version(path: Path, version: str) -> bool:
    """Set ``gitlab_version`` to ``version`` in the vars file at ``path``; return whether it changed.

    Only the value changes: its quotes, the comment after it and every other byte stay. The file is
    replaced atomically.
    """
    data = path.read_bytes()
    text = data.decode("utf-8")
    match = _match(path, text)
    if match["value"] == version:
        return False
    quote = match["quote"]
    updated = (
        text[: match.start("quote")]
        + f"{quote}{version}{quote}"
        + text[match.end("value") + len(match["quote"]) :]
    )
    temporary = path.with_name(f".{path.name}.zdu-tmp")
    temporary.write_bytes(updated.encode("utf-8"))
    temporary.replace(path)
    return True


def _group_hosts(inventory: Mapping[str, Any], group: str, seen: set[str] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if group in seen or group not in inventory:
        return []
    seen.add(group)
    entry = inventory[group]
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts.extend(host for host in _group_hosts(inventory, child, seen) if host not in hosts)
    return hosts


def hosts_matching(inventory: Mapping[str, Any], pattern: str) -> list[str]:
    """The hosts an Ansible host pattern selects, in inventory order.

    ``inventory`` is ``ansible-inventory --list`` output. Supported: group and host names, ``*``
    wildcards, several patterns joined by ``:`` or ``,``, and ``!name`` to exclude.
    """
    every: Sequence[str] = list(inventory.get("_meta", {}).get("hostvars", {}))
    groups = [name for name in inventory if name != "_meta"]
    selected: list[str] = []
    excluded: set[str] = set()
    for part in filter(None, re.split(r"[:,]", pattern)):
        negate = part.startswith("!")
        name = part.removeprefix("!")
        hosts: list[str] = []
        for group in fnmatch.filter(groups, name):
            hosts.extend(_group_hosts(inventory, group))
        hosts.extend(fnmatch.filter(every, name))
        if negate:
            excluded.update(hosts)
        else:
            selected.extend(host for host in hosts if host not in selected)
    return [host for host in selected if host not in excluded]
