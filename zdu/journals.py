"""Finding journals: ``zdu status`` and ``zdu report ID`` look where ``zdu upgrade`` wrote.

An upgrade writes to the journal of its configuration (``upgrade.state_dir``, which is often beside
the configuration file), not necessarily the default one. So that the commands that read journals
find it without ``--config``, every journal an upgrade began in is remembered in a small index in
the default state directory (``journals.txt``, one path a line), and the configuration files in the
current directory are read for their ``upgrade.state_dir`` too. The commands say which journals they
read, and ``--journal``/``--config`` still pick one.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "INDEX_NAME",
    "candidate_journals",
    "default_journal_path",
    "default_state_dir",
    "journal_of_config",
    "remember",
]

#: The index of journals upgrades began in, in the default state directory.
INDEX_NAME = "journals.txt"

#: How many journals the index keeps (the most recent).
INDEX_SIZE = 50


def default_state_dir() -> Path:
    """Where zdu keeps its journal and platform state: ``$ZDU_STATE_DIR`` or ``$XDG_STATE_HOME/zdu``."""
    explicit = os.environ.get("ZDU_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zdu"


def default_journal_path() -> Path:
    """The journal file in :func:`default_state_dir`."""
    return default_state_dir() / "journal.sqlite"


def _index() -> Path:
    return default_state_dir() / INDEX_NAME


def remember(journal_path: Path) -> None:
    """Add ``journal_path`` to the index (most recent last); never fails an upgrade."""
    path = journal_path.resolve()
    index = _index()
    try:
        known = [p for p in _read_index() if p != path]
        known = [*known, path][-INDEX_SIZE:]
        index.parent.mkdir(parents=True, exist_ok=True)
        temporary = index.with_name(f".{index.name}.{os.getpid()}")
        temporary.write_text("".join(f"{p}\n" for p in known), encoding="utf-8")
        temporary.replace(index)
    except OSError:
        pass


def _read_index() -> list[Path]:
    try:
        lines = _index().read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [Path(line) for line in lines if line.strip()]


def journal_of_config(config: Path) -> Path | None:
    """The journal a configuration file's upgrades write to, from its ``upgrade.state_dir`` alone.

    ``None`` when the file is no zdu configuration (no ``[target]``) or cannot be read.
    """
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(raw.get("target"), dict):
        return None
    upgrade = raw.get("upgrade")
    state_dir = upgrade.get("state_dir") if isinstance(upgrade, dict) else None
    if not isinstance(state_dir, str):
        return default_journal_path()
    path = Path(state_dir).expanduser()
    if not path.is_absolute():
        path = config.resolve().parent / path
    return (path / "journal.sqlite").resolve()


def candidate_journals(directory: Path | None = None) -> list[Path]:
    """Every journal there is to read (existing ones only).

    The default one, those of the configuration files in ``directory`` (default: the current one),
    and those in the index.
    """
    here = Path.cwd() if directory is None else directory
    configs: Iterable[Path] = sorted(here.glob("*.toml")) if here.is_dir() else []
    found: list[Path] = [default_journal_path()]
    for config in configs:
        journal = journal_of_config(config)
        if journal is not None:
            found.append(journal)
    found += reversed(_read_index())
    unique: dict[Path, None] = {}
    for path in found:
        with contextlib.suppress(OSError):
            if path.is_file():
                unique.setdefault(path.resolve(), None)
    return list(unique)
