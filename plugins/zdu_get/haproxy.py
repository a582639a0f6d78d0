"""HAProxy's runtime API, over its stats socket: read servers' state, drain them and put them back.

The socket must be declared with ``level admin`` (``stats socket /run/haproxy/admin.sock mode 600 level
admin``). Every command is one connection: write the command line, read until HAProxy closes.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from zdu.plugins import PlatformError

__all__ = ["HAProxyRuntime", "ServerState"]

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


@attrs.define
class HAProxyRuntime:
    """A client of HAProxy's runtime API at ``socket_path``."""

    socket_path: Path
    timeout: float = 5.0

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer; raises PlatformError when HAProxy is not there."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout)
                connection.connect(str(self.socket_path))
                connection.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise PlatformError(
                f"HAProxy runtime API at {self.socket_path}: {error}; GET's HAProxy has no runtime API "
                f"until 'stats socket {self.socket_path} mode 600 level admin' is added to its global "
                "section (docs/get-and-instrumentor.md)"
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
