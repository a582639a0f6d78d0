"""Notifications: one message at every end of an upgrade, and a built-in webhook notifier.

The core calls the ``zdu_notify`` hook with a :class:`Notification` whenever an upgrade ends:
succeeded, rolled back (by a gate, by an interruption, or by ``zdu rollback``), failed, or paused for
a person. Any plugin may implement the hook (mail, a pager); :class:`WebhookNotifier` posts
Slack-compatible JSON (``{"text": ..., "attachments": [...]}``, which Slack's, Mattermost's and
Rocket.Chat's incoming webhooks accept) to each configured URL, retried with exponential backoff by
tenacity. The webhook URLs are secrets (they carry the token): never logged or reported.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import attrs
import tenacity

from zdu.context import UpgradeInfo
from zdu.model import Report, UpgradeStatus
from zdu.records import hookimpl
from zdu.secret import Secret

__all__ = ["Notification", "WebhookNotifier", "notification_of"]

log = logging.getLogger("zdu.notify")

_COLOURS = {"succeeded": "good", "rolled_back": "warning", "paused": "warning"}


@attrs.frozen
class Notification:
    """What ended, how, and why: what every notifier is given.

    :ivar upgrade_id: the journal's id of the upgrade.
    :ivar target: the target's name.
    :ivar from_version: the version it ran before.
    :ivar to_version: the release.
    :ivar status: ``succeeded``, ``rolled_back``, ``failed``, ``paused`` or ``interrupted``.
    :ivar trigger: what ended it: ``upgrade`` (its own course), ``manual rollback``, ``interrupted``.
    :ivar reason: why it did not succeed (empty when it did).
    :ivar duration_s: how long it ran.
    :ivar figures: the probes' main figures (``http.failed_requests``: 0).
    """

    upgrade_id: str
    target: str
    from_version: str
    to_version: str
    status: str
    trigger: str
    reason: str
    duration_s: float
    figures: dict[str, float] = attrs.field(factory=dict)

    @property
    def title(self) -> str:
        """One line: target, versions, outcome."""
        return (
            f"zdu: {self.target} {self.from_version} -> {self.to_version}: {self.status.replace('_', ' ')}"
            + (f" ({self.trigger})" if self.trigger != "upgrade" else "")
        )

    def slack_payload(self) -> dict[str, Any]:
        """Slack-compatible incoming-webhook JSON."""
        fields = [
            {"title": "upgrade", "value": self.upgrade_id, "short": True},
            {"title": "duration", "value": f"{self.duration_s:.1f} s", "short": True},
        ]
        fields += [
            {"title": name, "value": f"{value:g}", "short": True} for name, value in self.figures.items()
        ]
        attachment: dict[str, Any] = {
            "color": _COLOURS.get(self.status, "danger"),
            "fallback": self.title,
            "fields": fields,
        }
        if self.reason:
            attachment["text"] = self.reason
        return {"text": self.title, "attachments": [attachment]}


_FIGURES = (
    "requests",
    "failed_requests",
    "asset_errors",
    "longest_outage_s",
    "p99_ms",
    "apdex",
    "error_ratio",
)


def notification_of(upgrade: UpgradeInfo, report: Report, trigger: str = "upgrade") -> Notification:
    """The notification of a finished upgrade's report."""
    if trigger == "upgrade" and report.error and "interrupted" in report.error:
        trigger = "interrupted"
    figures = {
        f"{verdict.probe}.{name}": float(verdict.values[name])
        for verdict in report.verdicts
        for name in _FIGURES
        if name in verdict.values
    }
    return Notification(
        upgrade_id=upgrade.id,
        target=upgrade.target,
        from_version=upgrade.from_version,
        to_version=upgrade.to_version,
        status=report.status.value,
        trigger=trigger,
        reason=report.error
        or ("rolled back on request ('zdu rollback')" if trigger == "manual rollback" else ""),
        duration_s=round(report.duration_seconds, 3),
        figures=figures,
    )


class WebhookNotifier:
    """Posts every notification to webhook URLs (Slack-compatible), retrying with tenacity.

    :param urls: the webhooks (secrets).
    :param attempts: tries per webhook before giving up (a failure is logged, never raised).
    :param timeout: seconds one try may take.
    :param wait_max: the longest wait between two tries, in seconds (exponential from 0.5 s).
    """

    def __init__(
        self, urls: Sequence[Secret], *, attempts: int = 5, timeout: float = 10.0, wait_max: float = 8.0
    ) -> None:
        self.urls = tuple(urls)
        self.attempts = attempts
        self.timeout = timeout
        self.wait_max = wait_max
        self.sent: list[Notification] = []

    def _post(self, url: Secret, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in the configuration
            url.reveal(), data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                answer.read()
        except urllib.error.HTTPError as error:
            # never the URL: it carries the token
            raise OSError(f"the webhook answered {error.code}") from None
        except OSError as error:
            raise OSError(f"the webhook did not answer: {type(error).__name__}") from None

    def send(self, notification: Notification) -> bool:
        """Post to every webhook; return whether all took it."""
        body = json.dumps(notification.slack_payload()).encode()
        ok = True
        for index, url in enumerate(self.urls):
            retrying = tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.attempts),
                wait=tenacity.wait_exponential(multiplier=0.5, max=self.wait_max),
                retry=tenacity.retry_if_exception_type(OSError),
                reraise=True,
            )
            try:
                retrying(self._post, url, body)
            except OSError as error:
                ok = False
                log.warning(
                    "webhook %d of %d: %s after %d tries", index + 1, len(self.urls), error, self.attempts
                )
        self.sent.append(notification)
        return ok

    @hookimpl
    def zdu_notify(self, notification: Notification) -> None:
        """Post the notification."""
        self.send(notification)


def is_terminal(status: UpgradeStatus) -> bool:
    """Whether ``status`` ends an upgrade for good (paused and interrupted may go on)."""
    return not status.in_progress
