"""A string that never shows itself: for tokens and passwords in configuration."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["REDACTED", "Secret", "redact"]

REDACTED = "***"


@attrs.frozen(repr=False)
class Secret:
    """Holds a secret value. ``str()`` and ``repr()`` give ``***``; only :meth:`reveal` gives the value.

    Configuration fields typed ``Secret`` are structured from plain strings and are redacted wherever
    zdu writes configuration (the journal, reports, logs).
    """

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """The secret value, for the one place that needs it (an HTTP header, a client)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED


def redact(value: Any) -> Any:
    """A copy of a JSON-like ``value`` with every :class:`Secret` replaced by ``***``."""
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
