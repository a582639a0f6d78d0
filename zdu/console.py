"""What the command line's modules share: exit codes, progress on stderr, warnings held back, Ctrl-C.

:mod:`zdu.cli` and :mod:`zdu.fleet_cli` use it, and so do the commands plugins add (``zdu demo``,
``zdu local``), through :mod:`zdu.plugins`.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.status import Status

from zdu.context import UpgradeInfo
from zdu.model import Event, Report, UpgradeStatus
from zdu.records import hookimpl
from zdu.registry import ZduPluginManager, get_plugin_manager

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BUSY",
    "EXIT_FAILED",
    "EXIT_PAUSED",
    "LiveTraffic",
    "ProgressObserver",
    "WarningSummary",
    "emit",
    "interruptible",
    "manager_from",
    "report_exit_code",
    "stderr_console",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3
EXIT_PAUSED = 4

_PROGRESS_EVENTS = {
    "step-started",
    "gate-failed",
    "rollback",
    "analysis",
    "paused",
    "error",
    "migrations-applied",
    "migration-timing",
    "lock-retry",
    "invalid-index-dropped",
    "invalid-index-left",
    "background-migrations",
}


class ProgressObserver:
    """Shows an upgrade's phases and main events on stderr.

    On a terminal a spinner line tells the phase and the step in progress, with finished phases
    printed above it; elsewhere (a CI log, a pipe) every line is printed plainly.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._phase = ""
        self._step = ""
        self._traffic = LiveTraffic()
        self._failure_shown = False

    def _show(self, text: str) -> None:
        if self._status is not None:
            figures = self._traffic.line()
            self._status.update(f"{text}  [dim]{figures}[/dim]" if figures else text)

    @hookimpl
    def zdu_upgrade_started(self, upgrade: UpgradeInfo) -> None:
        """Start the spinner (on a terminal)."""
        self.console.print(
            f"[bold]{upgrade.target}[/bold]: {upgrade.from_version} -> {upgrade.to_version} with "
            f"{' + '.join((upgrade.strategy, *upgrade.layers))} (upgrade {upgrade.id})",
            highlight=False,
        )
        if self.console.is_terminal:
            self._status = self.console.status("preflight")
            self._status.start()

    @hookimpl
    def zdu_phase_started(self, upgrade: UpgradeInfo, phase: str) -> None:
        """Show the phase."""
        self._phase = phase
        self._step = ""
        if self._status is None:
            self.console.print(f"[bold]{upgrade.target}[/bold] {phase} …", highlight=False)
        self._show(f"{phase} …")

    @hookimpl
    def zdu_phase_finished(self, upgrade: UpgradeInfo, phase: str, outcome: str, duration_s: float) -> None:
        """Show how the phase ended."""
        colour = "green" if outcome == "succeeded" else "red"
        self.console.print(
            f"[bold]{upgrade.target}[/bold] {phase} [{colour}]{outcome}[/{colour}] in {duration_s:.1f}s",
            highlight=False,
        )

    @hookimpl
    def zdu_event(self, upgrade: UpgradeInfo, event: Event) -> None:
        """Show the steps and every gate failure."""
        if event.kind == "step-started":
            self._step = event.message
            self._show(f"{self._phase}: {event.message} …")
        if event.kind.startswith("measurement-"):
            self._traffic.add(event.data)
            self._show(f"{self._phase}: {self._step} …" if self._step else f"{self._phase} …")
        if event.kind in _PROGRESS_EVENTS:
            message = event.message
            if event.kind == "rollback" and self._failure_shown:
                message = "rolling back (the failure is above)"
            self._failure_shown |= event.kind in {"gate-failed", "error"}
            style = "red" if event.kind in {"gate-failed", "rollback", "error"} else "dim"
            self.console.print(f"  [{style}]{escape(message)}[/{style}]", highlight=False)

    @hookimpl
    def zdu_upgrade_finished(self, upgrade: UpgradeInfo, report: Report) -> None:
        """Stop the spinner."""
        if self._status is not None:
            self._status.stop()
            self._status = None


class LiveTraffic:
    """The probes' requests and failures so far, summed from the measurements (the live line)."""

    def __init__(self) -> None:
        self.requests = 0
        self.failed = 0
        self.asset_errors = 0

    def add(self, data: Mapping[str, Any]) -> None:
        """Add one measurement event's figures."""
        values = data.get("values", {})
        self.requests += int(values.get("requests", 0))
        self.failed += int(values.get("failed_requests", 0))
        self.asset_errors += int(values.get("asset_errors", 0))

    def line(self) -> str:
        """``1234 requests, 0 failed, 0 asset errors`` (empty before any was counted)."""
        if not self.requests:
            return ""
        return f"{self.requests} requests, {self.failed} failed, {self.asset_errors} asset errors"


class WarningSummary(logging.Handler):
    """Holds back the warnings logged while an upgrade shows its progress, and sums them up after.

    Probes warn about every failing stretch of traffic; interleaved with the progress lines they
    drown it. The upgrade's own warnings (``zdu.upgrade``) repeat what the progress already shows
    and are dropped; the others are counted by message and shown once each, with the first one.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[tuple[str, str], int] = {}
        self.first: dict[tuple[str, str], str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record``."""
        if record.name == "zdu.upgrade":
            return
        key = (record.name, str(record.msg))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.first.setdefault(key, record.getMessage())

    def lines(self) -> list[str]:
        """One line per kind of warning: how many, from where, and the first one."""
        return [
            f"{count} x {name}: {self.first[(name, message)]}"
            for (name, message), count in self.counts.items()
        ]

    @contextmanager
    def holding(self, console: Console) -> Iterator[WarningSummary]:
        """Route warnings here instead of stderr's log handlers (only at the default log level)."""
        root = logging.getLogger()
        if root.level < logging.WARNING:  # -v: the user asked for the log as it happens
            yield self
            return
        held = [h for h in root.handlers if h is not self]
        for handler in held:
            root.removeHandler(handler)
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)
            for handler in held:
                root.addHandler(handler)
            lines = self.lines()
            if lines:
                console.print(f"[yellow]{sum(self.counts.values())} warnings while it ran:[/yellow]")
                for line in lines:
                    console.print(f"  {escape(line)}", highlight=False)


def stderr_console() -> Console:
    """The console progress goes to; never hard-wrapped (a CI log or a pipe keeps whole lines)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def manager_from(ctx: click.Context) -> ZduPluginManager:
    """The plugin manager the command line runs with."""
    manager = ctx.find_object(ZduPluginManager)
    if manager is None:
        manager = get_plugin_manager()
        ctx.obj = manager
    return manager


def emit(data: Any, as_json: bool, text: str | Callable[[], str]) -> None:
    """Print a result: JSON when asked, else text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text)


def report_exit_code(report: Report) -> int:
    """The exit code a report stands for."""
    if report.status is UpgradeStatus.PAUSED:
        return EXIT_PAUSED
    return 0 if report.ok else EXIT_FAILED


@contextmanager
def interruptible(cancel: threading.Event, console: Console) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM) stops the upgrade at its next safe point, paused.

    A second one stops it at once (:class:`KeyboardInterrupt`), still resumable.
    """
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        console.print(
            "[yellow]interrupted: stopping at the next safe point, paused and resumable "
            "(again to stop at once, still resumable)[/yellow]"
        )

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[int(signum)] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
