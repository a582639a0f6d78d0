"""An operator's hands on a running upgrade: pause, abort, promote (as Argo Rollouts' commands).

Each decision is an event in the upgrade's journal, with who took it (``user@host``, or the actor
given) and when; the process running the upgrade reads it at its next safe point (a gate, a step, a
phase boundary, every second of a wait):

* :func:`pause` (``zdu pause ID``): the upgrade stops there, marked paused; ``zdu resume ID``
  continues it, ``zdu rollback ID`` rolls it back;
* :func:`abort` (``zdu abort ID``): the upgrade rolls back to the old version; refused once
  post-deployment migrations have started (the point of no return);
* :func:`promote` (``zdu promote ID``): every remaining wait and pause is skipped (a canary's
  ``pause``, a manual pause step, blue-green's ``scale_down_delay``); with ``full``, every remaining
  analysis and canary step too.

They act on a *running* upgrade, from any process on the machine that can write its journal. A
paused or interrupted upgrade has no process to read them: resume it, or roll it back.
"""

from __future__ import annotations

from pathlib import Path

from zdu.context import ABORT_EVENT, PAUSE_EVENT, PROMOTE_EVENT
from zdu.errors import RollbackRefused, UsageError
from zdu.journal import Journal, UpgradeRecord
from zdu.journals import candidate_journals
from zdu.model import Event, UpgradeStatus
from zdu.phases import PHASES
from zdu.upgrade import default_actor

__all__ = ["abort", "check_abortable", "find_journal", "pause", "promote", "running_upgrade"]


def find_journal(upgrade_id: str, journal: Journal | Path | str | None = None) -> Journal:
    """The journal holding ``upgrade_id``: the one given, else the first known journal that holds it.

    Raises :class:`~zdu.errors.UsageError` naming the journals searched when none holds it.
    """
    if journal is not None:
        found = journal if isinstance(journal, Journal) else Journal(journal)
        if found.get(upgrade_id) is None:
            raise UsageError(f"no upgrade {upgrade_id!r} in the journal {found.path}")
        return found
    paths = candidate_journals()
    for path in paths:
        candidate = Journal(path)
        if candidate.get(upgrade_id) is not None:
            return candidate
    searched = ", ".join(str(p) for p in paths) or "none found"
    raise UsageError(
        f"no upgrade {upgrade_id!r} in the journals {searched}; point at another with "
        "--journal FILE or --config CONFIG"
    )


def current_record(journal: Journal, upgrade_id: str) -> UpgradeRecord:
    """The upgrade as the journal holds it now (an owner that died is marked interrupted first)."""
    record = journal.get(upgrade_id)
    if record is None:
        raise UsageError(f"no upgrade {upgrade_id!r} in the journal {journal.path}")
    if record.status is UpgradeStatus.RUNNING:
        journal.upgrades(record.target, limit=1)  # marks an upgrade whose process died as interrupted
        record = journal.get(upgrade_id) or record
    return record


def running_upgrade(journal: Journal, upgrade_id: str, command: str) -> UpgradeRecord:
    """The record of ``upgrade_id`` if a process runs it now; else a UsageError saying what to do."""
    record = current_record(journal, upgrade_id)
    if record.status is UpgradeStatus.RUNNING:
        return record
    if record.status.in_progress:
        raise UsageError(
            f"upgrade {upgrade_id} is {record.status.value}: no process runs it to {command}; resume it "
            f"with 'zdu resume {upgrade_id}' or roll it back with 'zdu rollback {upgrade_id}'"
        )
    raise UsageError(f"upgrade {upgrade_id} is {record.status.value}: there is nothing to {command}")


def check_abortable(journal: Journal, upgrade_id: str) -> None:
    """Raise :class:`~zdu.errors.RollbackRefused` once the upgrade has started its point of no return."""
    started = [e.data.get("phase", "") for e in journal.events(upgrade_id) if e.kind == "phase-started"]
    phase = PHASES.past_the_point_of_no_return(started)
    if phase is not None:
        raise RollbackRefused(
            f"upgrade {upgrade_id} cannot be aborted: it has started {phase}, the point of no return "
            "(post-deployment migrations); roll forward with a fix, or restore a backup"
        )


def _record(journal: Journal, record: UpgradeRecord, kind: str, message: str, **data: object) -> Event:
    return journal.record(record.id, record.phase or "", kind, message, data)


def pause(upgrade_id: str, *, journal: Journal | Path | str | None = None, actor: str | None = None) -> Event:
    """Ask the running upgrade ``upgrade_id`` to stop at its next safe point, paused (``zdu pause``).

    :param journal: the upgrade's journal (a :class:`~zdu.journal.Journal` or its file); default: the
        first known journal that holds the upgrade.
    :param actor: who asks, for the journal (default: ``user@host``).
    :returns: the journaled request.
    :raises UsageError: no such upgrade, or no process runs it (paused, interrupted, finished).
    """
    found = find_journal(upgrade_id, journal)
    record = running_upgrade(found, upgrade_id, "pause")
    by = actor or default_actor()
    return _record(found, record, PAUSE_EVENT, f"pause requested by {by}", by=by)


def abort(upgrade_id: str, *, journal: Journal | Path | str | None = None, actor: str | None = None) -> Event:
    """Ask the running upgrade ``upgrade_id`` to roll back at its next safe point (``zdu abort``).

    Parameters and result as :func:`pause`.

    :raises RollbackRefused: it has started post-deployment migrations (the point of no return).
    :raises UsageError: no such upgrade, or no process runs it; a paused or interrupted upgrade is
        rolled back with :meth:`zdu.Upgrade.rollback` (``zdu abort`` does that itself).
    """
    found = find_journal(upgrade_id, journal)
    record = running_upgrade(found, upgrade_id, "abort")
    check_abortable(found, upgrade_id)
    by = actor or default_actor()
    return _record(found, record, ABORT_EVENT, f"abort requested by {by}", by=by)


def promote(
    upgrade_id: str,
    *,
    full: bool = False,
    journal: Journal | Path | str | None = None,
    actor: str | None = None,
) -> Event:
    """Let the running upgrade ``upgrade_id`` skip its remaining waits and pauses (``zdu promote``).

    :param full: skip every remaining analysis and canary step too (``zdu promote --full``).

    Other parameters, result and errors as :func:`pause`.
    """
    found = find_journal(upgrade_id, journal)
    record = running_upgrade(found, upgrade_id, "promote")
    by = actor or default_actor()
    what = "fully promoted" if full else "promoted"
    return _record(found, record, PROMOTE_EVENT, f"{what} by {by}", by=by, full=full)
