"""Secrets, and the one redaction everything zdu writes goes through.

A :class:`Secret` holds a token or a password from configuration; building one registers its value,
and :func:`redact` replaces every registered value (and the credentials of every URL) wherever it
appears: in the journal, the log, reports, error messages and the output of the commands zdu runs.
A plugin that learns a secret some other way (a token read from a file, a password a command
prints) calls :func:`register_secret` so that it is redacted too.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any, TextIO, overload

import attrs

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "RedactingStream",
    "Secret",
    "install_redaction",
    "redact",
    "register_secret",
    "register_url_credentials",
]

REDACTED = "***"

#: Values shorter than this are not registered: redacting every "a" or "no" would garble the text
#: and hide nothing worth hiding.
MIN_SECRET_LENGTH = 4


class _Registry:
    """The secret values known to this process, and one pattern matching any of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.known: set[str] = set()
        self.pattern: re.Pattern[str] | None = None


_registry = _Registry()

#: ``scheme://user:password@`` or ``scheme://token@``: the userinfo of a URL.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s@\"'<>]+)@")


def register_secret(value: str) -> None:
    """Redact ``value`` from now on, wherever :func:`redact` sees it (this process only)."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _registry.lock:
        if value in _registry.known:
            return
        _registry.known.add(value)
        # longest first, so that a secret containing another is replaced whole
        alternatives = sorted(_registry.known, key=len, reverse=True)
        _registry.pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def register_url_credentials(text: str) -> None:
    """Register the password (or token) of every URL with credentials in ``text``."""
    for match in _URL_USERINFO.finditer(text):
        user, colon, password = match.group("userinfo").partition(":")
        register_secret(password if colon else user)


@attrs.frozen(repr=False)
class Secret:
    """Holds a secret value. ``str()`` and ``repr()`` give ``***``; only :meth:`reveal` gives the value.

    Building one registers its value with :func:`register_secret`: configuration fields typed
    ``Secret`` are structured from plain strings, so every secret in a configuration is redacted
    wherever zdu writes (the journal, reports, logs, error messages, commands' output).
    """

    _value: str = attrs.field(alias="value")

    def __attrs_post_init__(self) -> None:
        register_secret(self._value)
        register_url_credentials(self._value)

    def reveal(self) -> str:
        """The secret value, for the one place that needs it (an HTTP header, a client)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED


def _redact_text(text: str) -> str:
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    pattern = _registry.pattern
    return pattern.sub(REDACTED, text) if pattern is not None else text


@overload
def redact(value: str) -> str: ...


@overload
def redact(value: Any) -> Any: ...


def redact(value: Any) -> Any:
    """``value`` with nothing secret left in it.

    A string loses every registered secret and the credentials of every URL; a :class:`Secret`
    becomes ``***``; a JSON-like value (dicts, lists, tuples) is copied with each of its strings (keys
    too) redacted. Anything else is returned as it is.
    """
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (the command line installs it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message and arguments with their redacted rendering; keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        record.msg = _redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            # a formatter prints exc_text when it is set; exc_info stays for handlers that read it
            record.exc_text = _redact_text(logging.Formatter().formatException(record.exc_info))
        return True


class RedactingStream:
    """A text stream that redacts what is written to it before passing it on (stdout, stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text``, redacted; return the length of ``text`` (as a caller expects)."""
        self._stream.write(_redact_text(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        """Write each line, redacted."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_redaction() -> None:
    """Redact everything this process prints: ``sys.stdout``, ``sys.stderr`` and the root log handlers.

    Idempotent; the command line calls it on start and again once logging is configured.
    """
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
