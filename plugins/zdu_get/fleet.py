"""A local GET-like fleet for ``zdu demo`` and the tests: demo-app "nodes" behind a real HAProxy.

Everything lives under one directory: the HAProxy configuration and runtime socket, the Ansible
inventory (``inventory/hosts.yml`` and GET's ``inventory/vars.yml`` with ``gitlab_version``), the
playbooks in GET's place (``ansible/playbooks/``, copied from ``demo_env``: real playbooks whose tasks
run :mod:`zdu_get.node` on localhost with ``ansible_connection=local``; they install without allowing a
downgrade, migrate on ``gitlab_rails_primary`` unless ``SKIP_POST_DEPLOYMENT_MIGRATIONS`` is in their
environment, and render from every Rails node's facts), and each node's process state.

``layout="get"`` shapes the rest as GET does: inventory groups ``gitlab_rails_primary``,
``praefect_primary``, ``redis_cache`` / ``redis_persistent``, ``haproxy_external``; HAProxy's backend
``gitlab-rails`` with servers ``gitlab-rails1..N`` numbered over the sorted Rails group, and a registry
backend listing the same nodes; the runtime API only with ``stats_socket`` (GET's HAProxy has none:
zdu's documented change adds it). HAProxy runs in the foreground of
its own session (no systemd) and is stopped, with every node, by :meth:`LocalGetFleet.down`.

HAProxy itself is replaced (a new binary, a new version, a new configuration) by
:meth:`LocalGetFleet.reload_haproxy`, HAProxy's seamless reload: the new process takes the listening
sockets from the old one over the stats socket (``expose-fd listeners``, ``-x``), tells it to stop
(``-sf``: it closes its listeners and finishes the connections it holds, websockets and long downloads
included), and starts from the servers' states the old one had (``server-state-file``), so a server
zdu drained stays drained.

HAProxy retries nothing here (``retries 0``, no ``option redispatch``), so what the probes count is
what the nodes do. Websockets and long downloads pass through it. A playbook replaces a node's app
through :mod:`zdu_get.node`, which stops it with SIGTERM (SIGKILL only after a 10 s grace): the app
finishes its requests in flight and closes its websockets with a close frame (1001, going away).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from zdu.plugins import PlatformError, ProcessIdentity, free_port, http_status, spawn, stop_processes
from zdu_get.haproxy import HAProxyRuntime
from zdu_get.node import start_node, stop_node

__all__ = ["DEMO_PLAYBOOKS", "HAProxyReload", "LocalGetFleet", "haproxy_config"]

#: The playbooks of the local fleet, one per component, named as GET names them.
DEMO_PLAYBOOKS = Path(__file__).parent / "demo_env"

_DEFAULT_COMPONENTS: Mapping[str, Sequence[str]] = {
    "consul": ("consul-1",),
    "postgres": ("postgres-1",),
    "pgbouncer": ("pgbouncer-1",),
    "redis": ("redis-1",),
    "gitaly": ("gitaly-1",),
    "praefect": ("praefect-1",),
    "sidekiq": ("sidekiq-1",),
}

_HAPROXY = """\
global
{stats_socket}    stats timeout 30s
    # the servers' states (a server drained by zdu) carried over a reload
    server-state-file {state}

defaults
    mode http
    load-server-state-from-file global
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # websockets (/-/cable) and long downloads: an upgraded connection lives on as a tunnel
    timeout tunnel 1h
    option http-server-close
    # No retry and no 'option redispatch': a request a node refuses or cuts fails, once, where the
    # probes see it. The evidence is the fleet's own behaviour, not HAProxy covering for it.
    retries 0

frontend gitlab
    bind 127.0.0.1:{port}
    default_backend {backend}

backend {backend}
    balance roundrobin
    option httpchk GET /-/readiness
    default-server inter 300ms fall 2 rise 1
{servers}
{extra}"""

_SOCKET_LINE = """\
    # expose-fd listeners: a reloading HAProxy (-x) takes the listening sockets from this one
    stats socket {socket} mode 600 level admin expose-fd listeners
"""

_TCP_LINE = """\
    # the runtime API over TCP, as an HAProxy in a container offers it to the controller
    stats socket ipv4@127.0.0.1:{port} level admin
"""

_REGISTRY = """
frontend gitlab-registry
    bind 127.0.0.1:{port}
    default_backend gitlab-registry

backend gitlab-registry
    balance roundrobin
    option httpchk GET /-/readiness
    default-server inter 300ms fall 2 rise 1
{servers}
"""

_HAPROXY_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@attrs.frozen
class HAProxyReload:
    """What :meth:`LocalGetFleet.reload_haproxy` did.

    :ivar old: the process that served before; it exits once the connections it holds end.
    :ivar new: the process that serves now.
    :ivar held_connections: connections the old process still held when the new one took over.
    """

    old: ProcessIdentity
    new: ProcessIdentity
    held_connections: int


_VARS = """\
all:
  vars:
    # Ansible settings: every "node" of the local fleet is this machine
    ansible_connection: local
    ansible_python_interpreter: "{python}"

    # GitLab settings
    prefix: "zdu-local"
    gitlab_version: "{version}"   # the package every node installs
    external_url: "{url}"

    # where the local fleet keeps its nodes' state
    zdu_fleet_dir: "{directory}"
"""


def haproxy_config(
    socket: Path,
    port: int,
    servers: Mapping[str, str],
    *,
    backend: str = "gitlab_rails",
    registry: tuple[int, Mapping[str, str]] | None = None,
    stats_socket: bool = True,
    stats_tcp: int = 0,
) -> str:
    """The local fleet's HAProxy configuration: ``servers`` (name: ``host:port``) behind ``port``.

    Health-checked on ``/-/readiness``, runtime API on ``socket`` (with ``stats_socket``) and on
    127.0.0.1:``stats_tcp`` (when not 0: how an HAProxy in a container is reached); no retry, no
    redispatch; websockets pass (``timeout tunnel``). ``registry``: a second frontend (its port) and
    backend ``gitlab-registry`` with its servers.
    """
    lines = [f"    server {name} {address} check" for name, address in servers.items()]
    state = socket.with_name("haproxy.state")
    extra = ""
    if registry is not None:
        registry_lines = [f"    server {name} {address} check" for name, address in registry[1].items()]
        extra = _REGISTRY.format(port=registry[0], servers="\n".join(registry_lines))
    return _HAPROXY.format(
        stats_socket=(_SOCKET_LINE.format(socket=socket) if stats_socket else "")
        + (_TCP_LINE.format(port=stats_tcp) if stats_tcp else ""),
        port=port,
        servers="\n".join(lines),
        state=state,
        backend=backend,
        extra=extra,
    )


@attrs.define
class LocalGetFleet:
    """Demo-app Rails nodes behind HAProxy, other components as recorded versions, all under ``directory``.

    :ivar rails: the Rails nodes' names (HAProxy server names and inventory hosts).
    :ivar components: the other components present, each with its hosts (absent ones are not in the
        inventory, and the ``get`` strategy skips them).
    :ivar faults: per Rails node, a demo-app fault and the version it applies to.
    """

    directory: Path
    rails: tuple[str, ...] = ("rails-1", "rails-2", "rails-3")
    components: Mapping[str, Sequence[str]] = attrs.field(factory=lambda: dict(_DEFAULT_COMPONENTS))
    faults: Mapping[str, tuple[str, str]] = attrs.field(factory=dict)
    startup_delay: float = 0.3
    #: a SQLite file all nodes share as the demo app's ``--database`` (writes read back through any node)
    database: Path | None = None
    port: int = 0
    #: "zdu" (backend gitlab_rails, servers named as the hosts) or "get" (GET's names, see the module)
    layout: str = "zdu"
    #: whether HAProxy's configuration has the runtime API line (GET's has none)
    stats_socket: bool = True
    #: whether zdu reaches the runtime API over TCP (``tcp://127.0.0.1:PORT``) instead of the socket
    stats_tcp: bool = False
    _tcp_port: int = 0
    _haproxy: ProcessIdentity | None = None
    _retiring: list[ProcessIdentity] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.stats_tcp and not self._tcp_port:
            self._tcp_port = free_port("127.0.0.1")

    @property
    def retries(self) -> bool:
        """Whether the fleet's HAProxy retries a failed request (never: ``retries 0``, no redispatch)."""
        return False

    @property
    def backend(self) -> str:
        """The Rails backend users reach."""
        return "gitlab-rails" if self.layout == "get" else "gitlab_rails"

    def server_names(self, prefix: str = "gitlab-rails") -> dict[str, str]:
        """Per Rails host, its HAProxy server name (GET: ``<prefix><n>`` over the sorted hosts)."""
        if self.layout != "get":
            return {node: node for node in self.rails}
        return {node: f"{prefix}{index}" for index, node in enumerate(sorted(self.rails), start=1)}

    @property
    def socket(self) -> Path:
        """HAProxy's runtime API socket."""
        return self.directory / "haproxy.sock"

    @property
    def runtime_api(self) -> str:
        """Where zdu reaches HAProxy's runtime API: the socket, or ``tcp://127.0.0.1:PORT``."""
        return f"tcp://127.0.0.1:{self._tcp_port}" if self.stats_tcp else str(self.socket)

    @property
    def url(self) -> str:
        """The HAProxy frontend."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def inventory(self) -> Path:
        """The inventory directory."""
        return self.directory / "inventory"

    @property
    def vars_file(self) -> Path:
        """GET's vars file, with ``gitlab_version``."""
        return self.inventory / "vars.yml"

    @property
    def ansible_dir(self) -> Path:
        """The Ansible project directory (playbooks)."""
        return self.directory / "ansible"

    def platform_options(self, **extra: Any) -> dict[str, Any]:
        """The ``[platform]`` table of the ``get`` platform for this fleet."""
        return {
            "url": self.url,
            "haproxy_socket": self.runtime_api,
            "ansible_dir": str(self.ansible_dir),
            "inventory": str(self.inventory),
            "inventory_vars": str(self.vars_file),
            "drain_timeout": 30.0,
            "ready_timeout": 30.0,
            **self._layout_options(),
            **extra,
        }

    def _layout_options(self) -> dict[str, Any]:
        if self.layout != "get":
            return {}
        return {
            "backend": "gitlab-rails",
            "rails_backends": [
                {"backend": "gitlab-rails", "servers": "gitlab-rails{index}"},
                {"backend": "gitlab-registry", "servers": "gitlab-registry{index}"},
            ],
        }

    def up(self, version: str) -> str:
        """Write the inventory and HAProxy's configuration, start the nodes at ``version`` and HAProxy."""
        self.write_inventory(version)
        servers = {}
        try:
            for node in self.rails:
                fault, fault_version = self.faults.get(node, ("", ""))
                state = start_node(
                    self.directory,
                    node,
                    version,
                    port=free_port("127.0.0.1"),
                    fault=fault,
                    fault_version=fault_version,
                    startup_delay=self.startup_delay,
                    database=str(self.database) if self.database is not None else "",
                )
                servers[node] = f"127.0.0.1:{state.port}"
                (self.directory / "components" / f"{node}.version").write_text(f"{version}\n")
            for component_hosts in self.components.values():
                for host in component_hosts:
                    (self.directory / "components" / f"{host}.version").write_text(f"{version}\n")
            self.start_haproxy(servers)
        except BaseException:
            self.down()
            raise
        return self.url

    def write_inventory(self, version: str) -> None:
        """Write the playbooks, the inventory (hosts and ``gitlab_version: <version>``), start nothing."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port("127.0.0.1")
        shutil.copytree(DEMO_PLAYBOOKS, self.ansible_dir / "playbooks", dirs_exist_ok=True)
        self.inventory.mkdir(exist_ok=True)
        self.vars_file.write_text(
            _VARS.format(python=sys.executable, version=version, url=self.url, directory=self.directory),
            encoding="utf-8",
        )
        groups = {name: list(hosts) for name, hosts in self.components.items() if hosts}
        groups["gitlab_rails"] = list(self.rails)
        groups["gitlab_rails_primary"] = [self.rails[0]]
        if self.layout == "get":
            groups["gitlab_rails_secondary"] = list(self.rails[1:])
        lines = ["all:", "  children:"]
        for group, hosts in groups.items():
            lines += [f"    {group}:", "      hosts:", *(f"        {host}: {{}}" for host in hosts)]
        (self.inventory / "hosts.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (self.directory / "components").mkdir(exist_ok=True)

    def start_haproxy(self, servers: Mapping[str, str]) -> None:
        """Write HAProxy's configuration for ``servers`` (name: ``host:port``), start it, wait all UP.

        :meth:`up` calls it with the nodes it started; :meth:`down` stops it.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port("127.0.0.1")
        config = self.directory / "haproxy.cfg"
        names = self.server_names()
        named = {names.get(node, node): address for node, address in servers.items()}
        registry = None
        if self.layout == "get":
            registry_names = self.server_names("gitlab-registry")
            registry = (
                free_port("127.0.0.1"),
                {registry_names.get(n, n): address for n, address in servers.items()},
            )
        config.write_text(
            haproxy_config(
                self.socket,
                self.port,
                named,
                backend=self.backend,
                registry=registry,
                stats_socket=self.stats_socket,
                stats_tcp=self._tcp_port,
            ),
            encoding="utf-8",
        )
        self.socket.with_name("haproxy.state").unlink(missing_ok=True)  # a fresh start: every server UP
        self._haproxy = spawn(
            ["haproxy", "-db", "-f", str(config)], _HAPROXY_ENV, self.directory / "logs" / "haproxy.log"
        )
        self._wait_up()

    @property
    def haproxy(self) -> ProcessIdentity | None:
        """The HAProxy process that serves (None before :meth:`start_haproxy` or after :meth:`down`)."""
        return self._haproxy

    def stop_haproxy(self) -> None:
        """Stop HAProxy (SIGTERM: its connections are cut), leaving the nodes running."""
        if self._haproxy is not None:
            stop_processes([self._haproxy], 5.0)
            self._haproxy = None

    def reload_haproxy(self, program: str = "haproxy", *, timeout: float = 15.0) -> HAProxyReload:
        """Replace the running HAProxy by ``program`` on the same configuration, seamlessly.

        The servers' states are saved (``show servers state`` into the ``server-state-file``); the new
        process is started with ``-x <stats socket>`` (it receives the listening sockets from the old
        one: no moment without a listener, no refused connection) and ``-sf <old pid>`` (once it
        serves, the old process stops listening and finishes what it holds: requests in flight,
        long downloads, websockets). Returns once the new process answers on the stats socket with
        every server in the state it had; the old one exits on its own later.

        :param program: the HAProxy program (a name on PATH, /usr/sbin included, or a path).
        """
        old = self._haproxy
        if old is None or not old.alive():
            raise PlatformError("HAProxy does not run: nothing to reload (start the fleet first)")
        runtime = HAProxyRuntime(self.socket)
        before = {s.name: (s.routed, s.draining) for s in runtime.servers(self.backend)}
        self.socket.with_name("haproxy.state").write_text(runtime.command("show servers state"))
        process = old.process()
        held = 0
        if process is not None:
            held = sum(1 for c in process.net_connections(kind="tcp") if c.status == "ESTABLISHED")
        config = self.directory / "haproxy.cfg"
        command = [program, "-db", "-f", str(config), "-x", str(self.socket), "-sf", str(old.pid)]
        new = spawn(command, _HAPROXY_ENV, self.directory / "logs" / "haproxy.log")
        deadline = time.monotonic() + timeout
        while True:
            try:
                serving = f"Pid: {new.pid}" in runtime.command("show info")
                after = {s.name: (s.routed, s.draining) for s in runtime.servers(self.backend)}
            except PlatformError:
                serving, after = False, {}
            if serving and after == before:
                break
            if not new.alive() or time.monotonic() >= deadline:
                if new.alive():
                    stop_processes([new], 5.0)
                raise PlatformError(
                    f"the new HAProxy ({program}) did not take over within {timeout:g}s "
                    f"(servers {after or 'unknown'}, before {before}); see "
                    f"{self.directory / 'logs' / 'haproxy.log'}"
                )
            time.sleep(0.05)
        self._haproxy = new
        self._retiring.append(old)
        return HAProxyReload(old=old, new=new, held_connections=held)

    def _wait_up(self, timeout: float = 15.0) -> None:
        runtime = HAProxyRuntime(self.runtime_api)
        deadline = time.monotonic() + timeout
        while True:
            # no runtime API to ask: wait until the frontend answers through a node
            alive = self._haproxy is not None and self._haproxy.alive()
            if not self.stats_socket and alive and http_status("127.0.0.1", self.port, "/-/readiness") == 200:
                return
            try:
                if self.stats_socket and all(server.routed for server in runtime.servers(self.backend)):
                    return
            except PlatformError:
                if self._haproxy is None or not self._haproxy.alive():
                    raise PlatformError(
                        f"HAProxy did not start; see {self.directory / 'logs' / 'haproxy.log'}"
                    ) from None
            if time.monotonic() >= deadline:
                raise PlatformError(f"the local fleet's nodes were not all UP in HAProxy within {timeout:g}s")
            time.sleep(0.05)

    def node_pids(self) -> dict[str, int]:
        """Each Rails node's current process id (a node that was upgraded has a new one)."""
        from zdu_get.node import read_node  # noqa: PLC0415

        return {
            node: state.pid for node in self.rails if (state := read_node(self.directory, node)) is not None
        }

    def down(self) -> None:
        """Stop HAProxy (and any old one still finishing its connections) and every node. Idempotent."""
        self.stop_haproxy()
        stop_processes(self._retiring, 5.0)
        self._retiring.clear()
        for node in self.rails:
            stop_node(self.directory, node, grace=5.0)
