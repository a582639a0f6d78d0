"""The demo's journal and reports: its upgrades can be looked up after it ends.

The demo's fleets live in temporary directories, removed at the end; its upgrades are recorded in a
journal that stays, ``demo/journal.sqlite`` in the default state directory, which ``zdu status`` and
``zdu report ID`` find without options. ``zdu demo --html DIR`` writes one HTML report per scenario
and an ``index.html`` linking them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zdu.journal import Journal, default_state_dir
from zdu.model import UpgradeStatus
from zdu.report import load_view, render_html, render_index

__all__ = ["demo_journal", "write_html_reports"]


def demo_journal(path: Path | None = None) -> Journal:
    """The journal the demo records in (default: ``<default state dir>/demo/journal.sqlite``).

    It holds only the demo's upgrades. Those a demo left unfinished (it was killed: its fleet is gone
    with its temporary directory) are closed as failed, so that they do not hold the demo's targets.
    """
    journal = Journal(path or default_state_dir() / "demo" / "journal.sqlite")
    for record in journal.upgrades(limit=1000):  # marks those of dead owners interrupted
        if record.status in (UpgradeStatus.INTERRUPTED, UpgradeStatus.PAUSED):
            journal.finish(
                record.id,
                UpgradeStatus.FAILED,
                error="abandoned: the demo that ran it stopped, its fleet is gone",
            )
    return journal


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
