"""The demo's journal and reports: its upgrades can be looked up after it ends.

The demo's fleets live in temporary directories, removed at the end; its upgrades are recorded in a
journal that stays, one per run under ``demos/`` in the default state directory, which ``zdu status``
and ``zdu report ID`` find without options. ``zdu demo --html DIR`` writes one HTML report per scenario
and an ``index.html`` linking them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from zdu.plugins import Journal, default_state_dir, load_view, render_html, render_index

__all__ = ["KEEP_RUNS", "demo_journal", "write_html_reports"]

#: The journals of this many latest demo runs are kept.
KEEP_RUNS = 20


def demo_journal(directory: Path | None = None, keep: int = KEEP_RUNS) -> Journal:
    """A new journal for one demo run, in ``directory`` (default: ``<default state dir>/demos``).

    One journal per run, so that demos running at once never meet on a target; ``zdu report ID``
    finds it all the same (every journal an upgrade began in is remembered). The journals of all but
    the ``keep`` latest runs are removed.
    """
    runs = directory or default_state_dir() / "demos"
    run = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run.mkdir(parents=True, exist_ok=True)
    for old in sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return Journal(run / "journal.sqlite")


def write_html_reports(journal: Journal, scenarios: Sequence[tuple[str, str, str]], directory: Path) -> Path:
    """One page per ``(key, title, upgrade id)`` and an ``index.html``; return the index's path."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, (key, title, upgrade_id) in enumerate(scenarios, start=1):
        if not upgrade_id:
            continue
        view = load_view(journal, upgrade_id)
        name = f"{number:02d}-{key.replace('+', '-')}.html"
        render_html(view, directory / name)
        entries.append(
            (
                f"{title}: {view.record.from_version} -> {view.record.to_version}",
                view.record.status.value,
                name,
            )
        )
    return render_index(entries, directory / "index.html")
