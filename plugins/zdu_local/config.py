"""The configuration of the local platform (``[platform]`` in a target's TOML file)."""

from __future__ import annotations

import sys
from typing import Any

import attrs

from zdu_demo import DEMO_APP_COMMAND

__all__ = [
    "DEFAULT_ASSETS_COMMAND",
    "DEFAULT_COMMAND",
    "LocalPlatformConfig",
    "split_address",
]

DEFAULT_COMMAND = DEMO_APP_COMMAND


PLACEHOLDERS = {"version": "16.6.0", "port": "8080", "host": "127.0.0.1"}
DEFAULT_ASSETS_COMMAND = (
    sys.executable,
    "-m",
    "zdu_demo.demo_app",
    "--export-assets",
    "{dir}",
    "--version",
    "{version}",
)
ASSETS_PLACEHOLDERS = {"dir": "/tmp/assets", "version": "16.6.0"}


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8080`` for IPv6) into its parts; raise ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not HOST:PORT (such as '127.0.0.1:8080')")
    return host.strip("[]"), int(port)


def _positive(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _at_least_one(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value!r}")


def _placeholders_only(placeholders: dict[str, str]) -> Any:
    """A validator: every argument of a command may use only ``placeholders``."""
    braced = ["{" + name + "}" for name in placeholders]
    names = ", ".join(braced[:-1]) + " and " + braced[-1] if len(braced) > 1 else braced[0]

    def check(instance: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
        for argument in value:
            try:
                argument.format(**placeholders)
            except (KeyError, IndexError, ValueError) as error:
                raise ValueError(
                    f"{attribute.name} argument {argument!r} has a bad placeholder ({error}); "
                    f"the placeholders are {names}"
                ) from None

    return check


def _names_a_program(instance: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must name a program, got {value!r}")


def _not_negative(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value!r}")


def _valid_address(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        split_address(value)
    except ValueError as error:
        raise ValueError(f"{attribute.name}: {error}") from None


def _valid_path(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"{attribute.name} must start with '/', got {value!r}")


def _valid_path_or_empty(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if value and not value.startswith("/"):
        raise ValueError(f"{attribute.name} must start with '/' (or be empty: none), got {value!r}")


@attrs.frozen
class LocalPlatformConfig:
    """How the local platform runs the fleet: processes on this machine behind a real nginx.

    :ivar replicas: how many instances ``zdu local up`` starts (at least 1).
    :ivar command: the program of one instance and its arguments, run without a shell; ``{version}``,
        ``{port}`` and ``{host}`` are replaced per instance. The default runs the bundled demo app.
    :ivar env: environment variables added to the instances' environment.
    :ivar host: the address instances listen on (passed as ``{host}``; nginx connects to it).
    :ivar listen: where nginx, the router, listens for users (``HOST:PORT``); port 0 picks a free port
        when the fleet comes up and keeps it for the fleet's life.
    :ivar readiness_path: the HTTP path that answers 200 once an instance is ready for traffic.
    :ivar ready_timeout: seconds a new instance has to become ready before it is stopped and the
        scale-up fails.
    :ivar drain_timeout: seconds to wait, after an instance left the router, for its requests in
        flight to finish before it is stopped anyway.
    :ivar stop_grace: seconds between SIGTERM and SIGKILL when an instance stops. The application
        needs them to shut down cleanly: close its websockets with a close frame and, with ``drain``
        off, finish the requests it still has in flight. Give it more than the app's own shutdown
        time (the demo app's ``--blackout-seconds`` plus, with requests in flight, up to its
        ``--shutdown-timeout``, 10 s by default), or its clients see their connections cut.
    :ivar nginx: the nginx program: a name looked up on PATH and in /usr/sbin, or a path.
    :ivar assets_command: the program that writes one version's fingerprinted assets (the files under
        ``/assets/``) into a directory, and its arguments, run without a shell; ``{dir}`` and
        ``{version}`` are replaced. Used by the assets store (the ``assets-shim`` layer). The default
        exports the bundled demo app's assets; an empty list means the platform has no assets store.
    :ivar affinity_grace: seconds the last instances of a group keep serving its assets to the
        clients pinned to it after they stopped taking pages, while affinity is on (so that a page
        that group rendered just before still gets its assets); 0 turns the grace off.
    :ivar retry: whether nginx re-sends a request whose connection to an instance failed (refused,
        timed out) to another instance (``proxy_next_upstream error timeout``). Off by default: every
        request gets one attempt, so the failures the probes count are the fleet's own and not hidden
        by the router; a zero-downtime claim must hold without a retry covering for it. On, nginx still
        never retries a non-idempotent request (POST, PATCH, ...): zdu never gives ``non_idempotent``.
    :ivar drain: take an instance out of the router and wait for its requests in flight before it is
        stopped (the default, and the only way to upgrade). ``false`` is for demonstrations and negative
        controls only: instances get SIGTERM while nginx still routes to them, and leave the router only
        once they exited ("stopped while still routed"), so clients see the failures draining prevents.
    :ivar inflight_path: the path on an instance that answers JSON ``{"requests": R, ...}``: its HTTP
        requests in flight (long downloads included; websockets and health checks not). While an
        instance drains, it is polled every 20 ms until ``requests`` is 0, so an instance holding only
        websockets is stopped at once (its SIGTERM closes them cleanly). When an instance answers
        anything else (404, not JSON, no connection), its established TCP connections are counted
        instead, websockets included. Empty: always count the connections.
    """

    # How many instances `zdu local up` starts.
    replicas: int = attrs.field(default=3, validator=_at_least_one)
    # The instance's program and arguments, no shell; {version}, {port}, {host} are substituted.
    command: list[str] = attrs.field(
        factory=lambda: list(DEFAULT_COMMAND), validator=[_names_a_program, _placeholders_only(PLACEHOLDERS)]
    )
    # Extra environment variables of every instance.
    env: dict[str, str] = attrs.field(factory=dict)
    # Where instances listen.
    host: str = "127.0.0.1"
    # Where the router (nginx) listens; port 0: a free port chosen at `up` and kept.
    listen: str = attrs.field(default="127.0.0.1:0", validator=_valid_address)
    # The readiness check of an instance: 200 means ready.
    readiness_path: str = attrs.field(default="/-/readiness", validator=_valid_path)
    # Seconds a new instance has to become ready.
    ready_timeout: float = attrs.field(default=30.0, validator=_positive)
    # Seconds to wait for in-flight connections of a drained instance.
    drain_timeout: float = attrs.field(default=30.0, validator=_positive)
    # Seconds between SIGTERM and SIGKILL.
    stop_grace: float = attrs.field(default=10.0, validator=_positive)
    # The nginx program (name on PATH or in /usr/sbin, or a path).
    nginx: str = "nginx"
    # The program that exports one version's assets into {dir}; [] for no assets store.
    assets_command: list[str] = attrs.field(
        factory=lambda: list(DEFAULT_ASSETS_COMMAND), validator=_placeholders_only(ASSETS_PLACEHOLDERS)
    )
    # Seconds a group's last instances keep serving its assets to pinned clients (affinity on).
    affinity_grace: float = attrs.field(default=2.0, validator=_not_negative)
    # Whether nginx retries a request whose connection failed on another instance (off: one attempt).
    retry: bool = False
    # Drain instances before stopping them; false: stopped while still routed (negative controls only).
    drain: bool = True
    # The instance's JSON count of requests in flight, polled while it drains; "": count connections.
    inflight_path: str = attrs.field(default="/-/inflight", validator=_valid_path_or_empty)

    def command_for(self, version: str, port: int) -> list[str]:
        """Return the command line of the instance of ``version`` listening on ``port``."""
        values = {"version": version, "port": str(port), "host": self.host}
        return [argument.format(**values) for argument in self.command]

    def assets_command_for(self, version: str, directory: str) -> list[str]:
        """Return the command line that exports the assets of ``version`` into ``directory``."""
        values = {"version": version, "dir": directory}
        return [argument.format(**values) for argument in self.assets_command]
