"""Node control for a local GET-like fleet: each "node" is one demo-app process on a fixed port.

What an Omnibus package upgrade does to a Rails node, in miniature, so that real Ansible tasks can do
it (``ansible.builtin.command``) in the tests and in ``zdu demo``::

    python -m zdu_get.node --fleet-dir DIR upgrade rails-2 --version 16.6.0

``upgrade`` (with ``--refuse-downgrade``: as a package manager does, it refuses to install an older
version than the one installed, and changes nothing) stops the node's process gracefully (SIGTERM:
the demo app finishes what is in flight),
starts the new version on the same port and waits until ``/-/readiness`` answers 200; it exits 1 when
the node does not become ready in time (the Ansible task then fails). ``stop`` stops the node.
The node's port, version and process are kept in ``DIR/nodes/<node>.json``; faults for a version
(``--fault never-ready --fault-version 16.6.0``) are passed to the demo app. ``install`` does the same
for a component that is not a Rails node: it records the version in ``DIR/components/<host>.version``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from zdu.plugins import ProcessIdentity, http_status, spawn, stop_processes
from zdu_demo import demo_app_command

__all__ = ["NodeState", "main", "start_node", "stop_node"]

_POLL = 0.05


@attrs.frozen
class NodeState:
    """A node as its state file records it."""

    name: str
    port: int
    version: str
    pid: int
    started_at: float
    fault: str = ""
    fault_version: str = ""
    #: the demo app's database (``--database``), kept across upgrades of the node; "" for none
    database: str = ""

    @property
    def process(self) -> ProcessIdentity:
        """The node's process."""
        return ProcessIdentity(self.pid, self.started_at)


def _state_file(fleet_dir: Path, name: str) -> Path:
    return fleet_dir / "nodes" / f"{name}.json"


def read_node(fleet_dir: Path, name: str) -> NodeState | None:
    """The node's recorded state, or None for a node never started."""
    try:
        return NodeState(**json.loads(_state_file(fleet_dir, name).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def stop_node(fleet_dir: Path, name: str, grace: float = 10.0) -> None:
    """Stop the node's process gracefully (SIGTERM, then SIGKILL after ``grace``)."""
    node = read_node(fleet_dir, name)
    if node is not None:
        stop_processes([node.process], grace)


def start_node(
    fleet_dir: Path,
    name: str,
    version: str,
    *,
    port: int | None = None,
    fault: str = "",
    fault_version: str = "",
    startup_delay: float = 0.3,
    ready_timeout: float = 30.0,
    database: str | None = None,
) -> NodeState:
    """Stop the node's current process (if any), start ``version`` on its port, wait until ready.

    ``database`` is the demo app's ``--database`` (a SQLite file every node shares, so that a write one
    node acknowledged is read back through any); None keeps the one the node had.

    Raises RuntimeError when the node is not ready within ``ready_timeout`` (the process is left
    running, as a package upgrade leaves a node that does not come up).
    """
    previous = read_node(fleet_dir, name)
    if port is None:
        if previous is None:
            raise RuntimeError(f"node {name} was never started: give its --port")
        port = previous.port
    if database is None:
        database = previous.database if previous is not None else ""
    if previous is not None:
        stop_processes([previous.process], 10.0)
    values = {"version": version, "port": str(port), "host": "127.0.0.1"}
    command = [argument.format(**values) for argument in demo_app_command(startup_delay)]
    if fault:
        command += ["--fault", fault] + (["--fault-version", fault_version] if fault_version else [])
    if database:
        command += ["--database", database]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    process = spawn(command, env, fleet_dir / "logs" / f"{name}.log")
    node = NodeState(name, port, version, process.pid, process.started_at, fault, fault_version, database)
    path = _state_file(fleet_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(attrs.asdict(node)), encoding="utf-8")
    temporary.replace(path)
    deadline = time.monotonic() + ready_timeout
    while http_status("127.0.0.1", port, "/-/readiness") != 200:
        if time.monotonic() >= deadline or not process.alive():
            raise RuntimeError(f"node {name} on {version} did not become ready within {ready_timeout:g}s")
        time.sleep(_POLL)
    return node


def _older(version: str, installed: str) -> bool:
    """Whether ``version`` is older than ``installed`` (dotted numbers; nothing installed: no)."""
    if not installed:
        return False
    return tuple(int(p) for p in version.split(".")) < tuple(int(p) for p in installed.split("."))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m zdu_get.node", description=__doc__)
    parser.add_argument("--fleet-dir", type=Path, required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="start VERSION on the node's port, wait until ready")
    upgrade.add_argument("node")
    upgrade.add_argument("--version", required=True)
    upgrade.add_argument("--port", type=int)
    upgrade.add_argument("--fault", default="")
    upgrade.add_argument("--fault-version", default="")
    upgrade.add_argument("--ready-timeout", type=float, default=30.0)
    upgrade.add_argument("--refuse-downgrade", action="store_true")
    install = commands.add_parser("install", help="record VERSION as a component host's package")
    install.add_argument("node")
    install.add_argument("--version", required=True)
    install.add_argument("--refuse-downgrade", action="store_true")
    stop = commands.add_parser("stop", help="stop the node")
    stop.add_argument("node")
    arguments = parser.parse_args(argv)
    if arguments.command == "stop":
        stop_node(arguments.fleet_dir, arguments.node)
        return 0
    if arguments.command == "install":
        path = arguments.fleet_dir / "components" / f"{arguments.node}.version"
        installed = path.read_text(encoding="utf-8").strip() if path.exists() else ""
        if arguments.refuse_downgrade and _older(arguments.version, installed):
            print(
                f"package downgrade refused: {installed} installed, {arguments.version} asked",
                file=sys.stderr,
            )
            return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{arguments.version}\n", encoding="utf-8")
        return 0
    previous = read_node(arguments.fleet_dir, arguments.node)
    if arguments.refuse_downgrade and previous is not None and _older(arguments.version, previous.version):
        print(
            f"package downgrade refused: {previous.version} installed, {arguments.version} asked",
            file=sys.stderr,
        )
        return 1
    try:
        start_node(
            arguments.fleet_dir,
            arguments.node,
            arguments.version,
            port=arguments.port,
            fault=arguments.fault or (previous.fault if previous else ""),
            fault_version=arguments.fault_version or (previous.fault_version if previous else ""),
            ready_timeout=arguments.ready_timeout,
        )
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"node {arguments.node} serves {arguments.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
