"""Configuration of the ``http`` probe: the ``[[probes]]`` table with ``name = "http"``.

Kept apart from the traffic and the figures so that both can read it without importing each other.
Every option is validated when the table is loaded; a bad value is an error naming the option and
the value (never the value of a header: those are secrets).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from zdu.plugins import Secret

__all__ = ["KINDS_IN_MIX", "SCHEDULES", "HttpProbeConfig"]

#: The kinds of scheduled request ``mix`` shares ``rps`` between.
KINDS_IN_MIX = ("page", "api", "write")

#: How request starts are spread in time: evenly, or as a Poisson process of the same mean rate.
SCHEDULES = ("constant", "poisson")

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _greater_than_zero(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ValueError(f"{attribute.name} must be a number greater than 0 (got {value!r})")


def _at_least(minimum: int) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{attribute.name} must be a whole number >= {minimum} (got {value!r})")

    return check


def _optional_count(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a whole number >= 0, or unset (got {value!r})")


def _optional_non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
    ):
        raise ValueError(f"{attribute.name} must be a number >= 0, or unset (got {value!r})")


def _optional_ratio(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
    ):
        raise ValueError(f"{attribute.name} must be a ratio between 0 and 1, or unset (got {value!r})")


def _path(*placeholders: str) -> Any:
    """A path starting with '/' that holds exactly the given ``{placeholders}`` (and no others)."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if not isinstance(value, str) or not value.startswith("/"):
            raise ValueError(f"{attribute.name} must be a path starting with '/' (got {value!r})")
        try:
            value.format(**dict.fromkeys(placeholders, "x"))
        except (KeyError, IndexError, ValueError):
            allowed = ", ".join("{" + p + "}" for p in placeholders)
            use = f"may only use the placeholders {allowed}" if allowed else "must not contain '{' or '}'"
            raise ValueError(f"{attribute.name} {use} (got {value!r})") from None
        for placeholder in placeholders:
            if "{" + placeholder + "}" not in value:
                raise ValueError(f"{attribute.name} must contain {{{placeholder}}} (got {value!r})")

    return check


def _header_name(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"{attribute.name} must be an HTTP header name (got {value!r})")


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)} (got {value!r})")

    return check


def _to_secret_headers(value: Mapping[str, Secret | str]) -> dict[str, Secret]:
    if not isinstance(value, Mapping):
        raise ValueError(f"headers must be a table of header names to values (got {type(value).__name__})")
    headers: dict[str, Secret] = {}
    for name, secret in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not an HTTP header name")
        if isinstance(secret, Secret):
            headers[name] = secret
        elif isinstance(secret, str):
            headers[name] = Secret(secret)
        else:  # never show the value: it may be a secret of the wrong type
            raise ValueError(f"headers.{name} must be a string (got a {type(secret).__name__})")
    return headers


def _to_mix(value: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"mix must be a table of kinds to shares of rps (got {value!r})")
    mix = dict.fromkeys(KINDS_IN_MIX, 0.0)
    for kind, share in value.items():
        if kind not in KINDS_IN_MIX:
            raise ValueError(f"mix: unknown kind {kind!r} (known: {', '.join(KINDS_IN_MIX)})")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"mix.{kind} must be a share between 0 and 1 (got {share!r})")
        mix[kind] = float(share)
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(
            f"mix: the shares must add up to 1 (got {dict(value)!r}, which adds up to {total:g})"
        )
    return mix


def _default_mix() -> dict[str, float]:
    return {"page": 0.5, "api": 0.3, "write": 0.2}


@attrs.frozen
class HttpProbeConfig:
    """Configuration of the ``http`` probe (the ``[[probes]]`` table with ``name = "http"``).

    The gate settings every probe has (``interval``, ``failure_limit``, ``inconclusive_limit``,
    ``dry_run``) are the core's, not these.

    Traffic:

    :ivar rps: offered rate of scheduled requests per second, all kinds of ``mix`` together. Starts
        follow the schedule whatever the answers do (open loop); assets and read-backs come on top.
    :ivar mix: shares of ``rps`` per kind: ``page`` (a page view, followed by its assets), ``api``
        (``GET api_path``) and ``write`` (``POST write_path``); known kinds only, each share >= 0, adding
        up to 1.
    :ivar schedule: ``constant`` (evenly spaced starts) or ``poisson`` (exponential gaps, same mean).
    :ivar clients: browser-like visitors, each with its own cookie jar; scheduled requests are spread
        over them in turn.
    :ivar session_pages: page views after which a visitor drops its cookies and comes back as a new
        visitor; 0 keeps every visitor for the whole run.
    :ivar max_in_flight: scheduled requests allowed in flight at once; a request due while this many
        are in flight is recorded as failed (``overload``), never skipped or delayed.
    :ivar timeout: seconds a request may take before it counts as failed; also the longest a
        websocket may stay silent, and the extra time a long download may take.
    :ivar slow_ms: an answered request slower than this (from its scheduled start) counts as slow.
    :ivar headers: sent with every request (a token, for instance); the values are secrets, never
        logged or reported. Plain strings are accepted and wrapped.
    :ivar version_header: the response header naming the version that answered; recorded per request.

    Paths (all relative to the probe's URL):

    :ivar path: the page visitors load (assets are found in it).
    :ivar api_path: the API read.
    :ivar write_path: where a write is posted (JSON ``{"key": k}``, acknowledged by a 2xx).
    :ivar read_back_path: where one acknowledged write is read back; must contain ``{key}``.
    :ivar lookup_path: where the acknowledged writes are looked up at the end (JSON ``{"keys": [...]}``
        in batches, answered by ``{"found": [...]}``).
    :ivar streams: long downloads kept going at once (0: none).
    :ivar stream_path: the long download; must contain ``{seconds}`` and ``{size}``.
    :ivar stream_seconds: how long the server takes to send one download.
    :ivar stream_size: bytes in one download.
    :ivar sockets: websocket connections held for the whole run (0: none).
    :ivar socket_path: the websocket endpoint.

    Thresholds (unset: no limit). Any crossed fails the measurement or the verdict:

    :ivar max_failed_requests: failed requests tolerated, every kind together.
    :ivar max_error_ratio: failed requests / requests tolerated (0..1).
    :ivar max_asset_errors: referenced assets answering 404 tolerated.
    :ivar max_lost_writes: acknowledged writes a read-back did not find, tolerated.
    :ivar max_cut_streams: long downloads cut short, tolerated.
    :ivar max_dropped_sockets: websockets dropped without a close frame (or not reopened), tolerated.
    :ivar max_slow_requests: answered requests slower than ``slow_ms`` tolerated.
    :ivar max_p99_ms: 99th percentile latency tolerated, in milliseconds.
    :ivar max_outage_s: longest outage tolerated, in seconds (see ``figures.longest_outage``).
    :ivar min_requests: fewer requests than this in a measurement (or the whole run) is inconclusive.
    """

    rps: float = attrs.field(default=100.0, validator=_greater_than_zero)
    mix: dict[str, float] = attrs.field(factory=_default_mix, converter=_to_mix)
    schedule: str = attrs.field(default="constant", validator=_one_of(SCHEDULES))
    clients: int = attrs.field(default=20, validator=_at_least(1))
    session_pages: int = attrs.field(default=20, validator=_at_least(0))
    max_in_flight: int = attrs.field(default=1000, validator=_at_least(1))
    timeout: float = attrs.field(default=5.0, validator=_greater_than_zero)
    slow_ms: float = attrs.field(default=1000.0, validator=_greater_than_zero)
    headers: dict[str, Secret] = attrs.field(factory=dict, converter=_to_secret_headers)
    version_header: str = attrs.field(default="X-Demo-Version", validator=_header_name)
    path: str = attrs.field(default="/", validator=_path())
    api_path: str = attrs.field(default="/api/v4/projects/1", validator=_path())
    write_path: str = attrs.field(default="/api/v4/writes", validator=_path())
    read_back_path: str = attrs.field(default="/api/v4/writes/{key}", validator=_path("key"))
    lookup_path: str = attrs.field(default="/api/v4/writes/lookup", validator=_path())
    streams: int = attrs.field(default=0, validator=_at_least(0))
    stream_path: str = attrs.field(
        default="/-/stream?seconds={seconds}&size={size}", validator=_path("seconds", "size")
    )
    stream_seconds: float = attrs.field(default=3.0, validator=_greater_than_zero)
    stream_size: int = attrs.field(default=65536, validator=_at_least(1))
    sockets: int = attrs.field(default=0, validator=_at_least(0))
    socket_path: str = attrs.field(default="/-/cable", validator=_path())
    max_failed_requests: int | None = attrs.field(default=0, validator=_optional_count)
    max_error_ratio: float | None = attrs.field(default=None, validator=_optional_ratio)
    max_asset_errors: int | None = attrs.field(default=0, validator=_optional_count)
    max_lost_writes: int | None = attrs.field(default=0, validator=_optional_count)
    max_cut_streams: int | None = attrs.field(default=0, validator=_optional_count)
    max_dropped_sockets: int | None = attrs.field(default=0, validator=_optional_count)
    max_slow_requests: int | None = attrs.field(default=None, validator=_optional_count)
    max_p99_ms: float | None = attrs.field(default=None, validator=_optional_non_negative)
    max_outage_s: float | None = attrs.field(default=None, validator=_optional_non_negative)
    min_requests: int = attrs.field(default=1, validator=_at_least(0))
