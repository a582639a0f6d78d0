"""HAProxy's runtime API, over its stats socket: read servers' state, drain them and put them back.

The socket must be declared with ``level admin``: a UNIX socket on the machine zdu runs on (``stats
socket /run/haproxy/admin.sock mode 600 level admin``), or a TCP one, ``tcp://HOST:PORT`` here, for an
HAProxy on another host or in a container (``stats socket ipv4@10.0.0.5:9999 level admin``; anyone who
reaches that port administers HAProxy, so bind it to an address only the controller reaches). Every
command is one connection: write the command line, read until HAProxy closes.
"""

from __future__ import annotations

import csv
import io
import socket
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import attrs

from zdu.plugins import PlatformError

__all__ = ["HAProxyRuntime", "ServerState", "runtime_address"]

_POLL = 0.05


@attrs.frozen
class ServerState:
    """One server of a backend, as ``show stat`` and ``show servers state`` report it.

    :ivar status: HAProxy's status column: ``UP``, ``DOWN``, ``DRAIN``, ``MAINT``, ``no check`` ...
    :ivar sessions: current sessions (``scur``): requests in flight through HAProxy.
    :ivar address: ``host:port`` the server is reached at.
    """

    backend: str
    name: str
    status: str
    sessions: int
    address: str

    @property
    def draining(self) -> bool:
        """Whether an operator (zdu) put it in drain or maintenance: no new traffic is sent to it."""
        return self.status.startswith(("DRAIN", "MAINT")) or "(drain)" in self.status.lower()

    @property
    def routed(self) -> bool:
        """Whether HAProxy sends it new requests: up and not drained."""
        return self.status.startswith("UP") or self.status == "no check"


def runtime_address(value: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``tcp://HOST:PORT`` runtime API address; None for a UNIX socket's path.

    :raises ValueError: a ``tcp://`` address without a host or a port, or any other scheme.
    """
    if "://" not in value:
        return None
    parsed = urllib.parse.urlsplit(value)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "tcp" or not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise ValueError(f"expected a socket's path or tcp://HOST:PORT, got {value!r}")
    return parsed.hostname, port


@attrs.define
class HAProxyRuntime:
    """A client of HAProxy's runtime API at ``socket_path``: a UNIX socket's path, or ``tcp://HOST:PORT``."""

    socket_path: Path | str
    timeout: float = 5.0

    def _connect(self) -> socket.socket:
        address = runtime_address(str(self.socket_path))
        if address is not None:
            return socket.create_connection(address, timeout=self.timeout)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(self.timeout)
            connection.connect(str(self.socket_path))
        except OSError:
            connection.close()
            raise
        return connection

    def fix(self) -> str:
        """The line HAProxy's ``global`` section needs for this client to reach its runtime API."""
        address = runtime_address(str(self.socket_path))
        if address is None:
            return f"stats socket {self.socket_path} mode 600 level admin"
        host, port = address
        return f"stats socket {'ipv6' if ':' in host else 'ipv4'}@{host}:{port} level admin"

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer; raises PlatformError when HAProxy is not there."""
        try:
            with self._connect() as connection:
                connection.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise PlatformError(
                f"HAProxy runtime API at {self.socket_path}: {error}; GET's HAProxy has no runtime API "
                f"until '{self.fix()}' is added to its global section (docs/get-and-instrumentor.md)"
            ) from error
        return b"".join(chunks).decode("utf-8", "replace")

    def servers(self, backend: str) -> list[ServerState]:
        """Every server of ``backend``, in configuration order."""
        stats = self.command("show stat")
        rows = csv.DictReader(io.StringIO(stats.removeprefix("# ")))
        addresses = self._addresses(backend)
        servers = [
            ServerState(
                backend=backend,
                name=row["svname"],
                status=row["status"],
                sessions=int(row["scur"] or 0),
                address=addresses.get(row["svname"], row.get("addr", "")),
            )
            for row in rows
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")
        ]
        if not servers:
            raise PlatformError(f"HAProxy has no backend {backend!r} with servers")
        return servers

    def _addresses(self, backend: str) -> dict[str, str]:
        lines = self.command(f"show servers state {backend}").splitlines()
        header = next((line for line in lines if line.startswith("#")), "")
        columns = header.lstrip("# ").split()
        addresses = {}
        for line in lines:
            if line.startswith("#") or not line.strip() or len(line.split()) < len(columns):
                continue
            row = dict(zip(columns, line.split(), strict=False))
            if "srv_name" in row and "srv_addr" in row:
                addresses[row["srv_name"]] = f"{row['srv_addr']}:{row.get('srv_port', '')}"
        return addresses

    def server(self, backend: str, name: str) -> ServerState:
        """One server; raises PlatformError when the backend has no such server."""
        for server in self.servers(backend):
            if server.name == name:
                return server
        raise PlatformError(f"HAProxy backend {backend!r} has no server {name!r}")

    def set_state(self, backend: str, name: str, state: str) -> None:
        """``set server <backend>/<name> state <ready|drain|maint>``; raises PlatformError when refused."""
        answer = self.command(f"set server {backend}/{name} state {state}").strip()
        if answer:
            raise PlatformError(f"HAProxy refused 'set server {backend}/{name} state {state}': {answer}")

    def wait_for(
        self,
        backend: str,
        name: str,
        condition: Callable[[ServerState], bool],
        timeout: float,
        what: str,
    ) -> ServerState:
        """Poll the server until ``condition`` holds; PlatformError naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.server(backend, name)
            if condition(server):
                return server
            if time.monotonic() >= deadline:
                raise PlatformError(
                    f"{backend}/{name}: {what} did not happen within {timeout:g}s "
                    f"(status {server.status}, {server.sessions} sessions)"
                )
            time.sleep(_POLL)
