"""The ``get`` platform: an Omnibus fleet built by GET, its Rails nodes behind HAProxy.

It provides the capability ``omnibus-nodes`` (:class:`zdu.platform.OmnibusNodes`): the inventory,
Ansible playbooks, Terraform, and HAProxy's drain of one Rails node at a time, driven through its
runtime API, in every backend that lists the Rails nodes (GET: ``gitlab-rails`` with servers
``gitlab-rails1..N`` numbered over the sorted Rails group, the registry's, the internal HAProxy's).
That mapping, HAProxy's runtime API (GET's HAProxy has none until its ``stats socket`` line is added)
and whether ``gitlab_version`` can choose the package at all are checked in preflight
(:meth:`GetPlatform.check_health`), before anything changes. Nodes are changed by Ansible (the ``get``
strategy), never started or scaled by the platform, so it has no ``instance-groups``; it still lists
the Rails nodes grouped by the version each one answers (``/api/v4/version``) behind HAProxy, whose
weights are on-off (ready or drained).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from zdu.plugins import (
    WEIGHTS_ON_OFF,
    Instance,
    InstanceGroup,
    PlatformEnv,
    PlatformError,
    Version,
    file_lock,
    inflight_requests,
    routed_versions,
)
from zdu_get.ansible import AnsibleEnvironment
from zdu_get.config import GetPlatformConfig, RailsBackend
from zdu_get.haproxy import HAProxyRuntime, ServerState
from zdu_get.inventory import hosts_matching, set_inventory_version
from zdu_get.terraform import TerraformRunner

__all__ = ["GetPlatform", "HAProxyRouter"]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class HAProxyRouter:
    """HAProxy in front of the Rails nodes: whole groups drained or made ready through the runtime API.

    It offers none of the optional router capabilities (preview route, affinity, canary split, assets
    route): GET's HAProxy configuration is GET's.
    """

    def __init__(self, platform: GetPlatform) -> None:
        self.platform = platform
        self.runtime = platform.runtime
        self.backend = platform.config.backend

    @property
    def url(self) -> str:
        """The HAProxy frontend."""
        return self.platform.config.url

    @property
    def weight_semantics(self) -> str:
        """``on-off``: a node is ready or drained; ready nodes share the traffic by HAProxy's balance."""
        return WEIGHTS_ON_OFF

    def weights(self) -> Mapping[str, int]:
        """1 for every group with a node HAProxy routes to, 0 for the others."""
        return {
            group.name: 1 if any(i.routed for i in group.instances) else 0 for group in self.platform.groups()
        }

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Make the nodes of groups with a weight ready, drain the others."""
        for group in self.platform.groups():
            state = "ready" if weights.get(group.name, 0) > 0 else "drain"
            for instance in group.instances:
                self.runtime.set_state(self.backend, instance.id, state)

    def verify_weights(self, weights: Mapping[str, int]) -> bool:
        """Whether exactly the groups with a weight are routed."""
        current = self.weights()
        return all((current.get(name, 0) > 0) == (weight > 0) for name, weight in weights.items())

    def remove_managed_routes(self) -> None:
        """Nothing to remove: zdu adds no route to HAProxy."""


class GetPlatform:
    """A GET environment (see :class:`~zdu_get.config.GetPlatformConfig`)."""

    def __init__(self, config: GetPlatformConfig, env: PlatformEnv) -> None:
        self.config = config
        self.env = env
        self.state_dir = env.state_dir
        self.runtime = HAProxyRuntime(config.haproxy_socket)
        self.ansible = AnsibleEnvironment(
            project_dir=config.ansible_dir,
            inventory=config.inventory,
            work_dir=env.state_dir / "ansible",
            facts_dir=env.state_dir / "ansible-facts" if config.gather_facts else None,
        )
        self._facts_gathered = False
        self._router = HAProxyRouter(self)

    @property
    def router(self) -> HAProxyRouter:
        """HAProxy."""
        return self._router

    @property
    def url(self) -> str:
        """The HAProxy frontend."""
        return self.config.url

    def serving_versions(self) -> list[Version]:
        """The versions of the Rails nodes HAProxy routes to."""
        return routed_versions(self)

    # -- OmnibusNodes --------------------------------------------------------------------------------

    @property
    def inventory_file(self) -> str:
        """The inventory's variables file that holds ``gitlab_version``."""
        return str(self.config.inventory_vars)

    def set_inventory_version(self, version: Version) -> None:
        """Write ``gitlab_version: <version>`` into the inventory's variables file."""
        set_inventory_version(self.config.inventory_vars, str(version))

    def hosts(self, pattern: str) -> list[str]:
        """The inventory's hosts matching ``pattern``."""
        return hosts_matching(self.ansible.inventory_list(), pattern)

    def run_playbook(
        self,
        label: str,
        hosts: str,
        *,
        playbook: str | None = None,
        role: str | None = None,
        extravars: Mapping[str, Any] | None = None,
        on_task: Any = None,
        envvars: Mapping[str, str] | None = None,
    ) -> None:
        """Run ``playbook`` (or ``role``) through ansible-runner; ``on_task`` gets each TaskResult.

        With ``gather_facts``, every host's facts are gathered into the fact cache before the first
        run, so that a run limited to one host still sees the others'.
        """
        if self.config.gather_facts and not self._facts_gathered:
            self.ansible.gather_facts("all")
            self._facts_gathered = True
        self.ansible.run(
            label, hosts, playbook=playbook, role=role, extravars=extravars, on_task=on_task, envvars=envvars
        )

    def infrastructure(self, version: Version) -> TerraformRunner | None:
        """:meth:`terraform`."""
        return self.terraform(version)

    def node_version(self, node: str) -> Version | None:
        """The version Rails node ``node`` answers at ``version_path``; None when it does not answer."""
        return self.server_version(self.server(self.server_name(node)))

    def node_routed(self, node: str) -> bool:
        """Whether HAProxy routes to ``node`` now (in the users' backend)."""
        return self.server(self.server_name(node)).routed

    def drain_node(self, node: str, *, wait: bool = True) -> None:
        """``state drain`` in every backend that lists the node; with ``wait``, :meth:`wait_drained`."""
        for runtime, backend, server in self.node_servers(node):
            runtime.set_state(backend, server, "drain")
        if wait:
            # Sessions reaching 0, or the node's own count of requests in flight reaching 0: a
            # websocket keeps its session open but is closed cleanly when the node stops.
            self.wait_drained(node)

    def return_node(self, node: str, *, undrain: bool = True) -> None:
        """Wait for ``/-/readiness``, ``state ready`` (with ``undrain``) in every backend, wait until UP."""
        timeout = self.config.ready_timeout
        name = self.server_name(node)
        readiness = "/-/readiness answering 200"
        self.runtime.wait_for(self.config.backend, name, self.node_ready, timeout, readiness)
        for runtime, backend, server in self.node_servers(node):
            if undrain:
                runtime.set_state(backend, server, "ready")
            runtime.wait_for(backend, server, lambda s: s.routed, timeout, "HAProxy marking it UP")

    # -- the Rails nodes in HAProxy ------------------------------------------------------------------

    def rails_backends(self) -> list[RailsBackend]:
        """Every backend that lists the Rails nodes (``rails_backends``, else ``backend`` by host name)."""
        return list(self.config.rails_backends) or [RailsBackend(self.config.backend)]

    def _runtime(self, backend: RailsBackend) -> HAProxyRuntime:
        if backend.socket is None or backend.socket == self.config.haproxy_socket:
            return self.runtime
        return HAProxyRuntime(backend.socket)

    def rails_hosts(self) -> list[str]:
        """The Rails group's hosts, sorted (the order ``{index}`` numbers them in)."""
        return sorted(self.hosts(self.config.rails_group))

    def expected_servers(self, backend: RailsBackend) -> dict[str, str]:
        """Per Rails host, its server name in ``backend``."""
        return {
            host: backend.servers.format(host=host, index=index)
            for index, host in enumerate(self.rails_hosts(), start=1)
        }

    def _server_of(self, backend: RailsBackend, node: str) -> str:
        """The server name of Rails node ``node`` in ``backend``; PlatformError when not in the group."""
        name = self.expected_servers(backend).get(node)
        if name is None:
            raise PlatformError(f"{node} is not a host of the Rails group {self.config.rails_group!r}")
        return name

    def server_name(self, node: str) -> str:
        """The node's server name in the users' backend (``backend``)."""
        for backend in self.rails_backends():
            if backend.backend == self.config.backend:
                return self._server_of(backend, node)
        return node

    def node_servers(self, node: str) -> list[tuple[HAProxyRuntime, str, str]]:
        """Every (runtime API, backend, server) that routes to Rails node ``node``."""
        return [
            (self._runtime(backend), backend.backend, self._server_of(backend, node))
            for backend in self.rails_backends()
        ]

    def check_mapping(self) -> list[str]:
        """What does not match between the Rails group and the backends that list it (empty: all do).

        Each backend must answer on its runtime API, at ``level admin``, and list exactly the servers
        the Rails hosts map to: one missing, one too many or one named otherwise is a problem.
        """
        problems = []
        for backend in self.rails_backends():
            runtime = self._runtime(backend)
            try:
                level = runtime.command("show cli level").strip()
                servers = {s.name for s in runtime.servers(backend.backend)}
            except PlatformError as error:
                problems.append(str(error))
                continue
            if level and level != "admin":
                problems.append(
                    f"HAProxy runtime API at {runtime.socket_path} is at level {level!r}, zdu needs "
                    "'level admin' on its stats socket line to drain servers"
                )
            expected = self.expected_servers(backend)
            if not expected:
                problems.append(f"the inventory's Rails group {self.config.rails_group!r} has no host")
                continue
            missing = sorted(set(expected.values()) - servers)
            extra = sorted(servers - set(expected.values()))
            if missing or extra:
                problems.append(
                    f"HAProxy backend {backend.backend!r} does not match the Rails group "
                    f"{self.config.rails_group!r} (servers {backend.servers!r} over its sorted hosts): "
                    + "; ".join(
                        part
                        for part in (
                            f"expected but absent: {', '.join(missing)}" if missing else "",
                            f"listed but no such host: {', '.join(extra)}" if extra else "",
                        )
                        if part
                    )
                )
        return problems

    def check_version_overrides(self) -> list[str]:
        """Hosts on which an inventory variable chooses the package instead of ``gitlab_version``."""
        inventory = self.ansible.inventory_list()
        hostvars = inventory.get("_meta", {}).get("hostvars", {})
        found: dict[str, list[str]] = {}
        for host, variables in hostvars.items():
            for name in self.config.version_overrides:
                if variables.get(name):
                    found.setdefault(name, []).append(host)
        return [
            f"inventory variable {name} is set (on {', '.join(sorted(hosts))}): GET then installs that "
            "package whatever gitlab_version says, so zdu cannot choose the release; unset it to upgrade "
            "by gitlab_version"
            for name, hosts in sorted(found.items())
        ]

    # -- GET's tools ---------------------------------------------------------------------------------

    def terraform(self, version: Version) -> TerraformRunner | None:
        """The environment's Terraform with its variables for ``version``; None without a directory."""
        if self.config.terraform_dir is None:
            return None
        variables = {key: value.format(version=version) for key, value in self.config.terraform_vars.items()}
        return TerraformRunner(
            directory=self.config.terraform_dir,
            plan_file=self.state_dir / "terraform" / f"upgrade-{version}.tfplan",
            variables=variables,
            allow=tuple(self.config.terraform_allow),
        )

    # -- nodes ---------------------------------------------------------------------------------------

    def servers(self) -> list[ServerState]:
        """The Rails nodes as HAProxy sees them."""
        return self.runtime.servers(self.config.backend)

    def server(self, name: str) -> ServerState:
        """One Rails node as HAProxy sees it."""
        return self.runtime.server(self.config.backend, name)

    def server_version(self, server: ServerState) -> Version | None:
        """The version the node answers at ``version_path``; None when it does not answer."""
        host, port = _split(server.address)
        connection = http.client.HTTPConnection(host, port, timeout=2.0)
        headers = {}
        if self.config.version_token is not None:
            headers["PRIVATE-TOKEN"] = self.config.version_token.reveal()
        try:
            connection.request("GET", self.config.version_path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                return None
            return Version.parse(str(json.loads(body)["version"]))
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            return None
        finally:
            connection.close()

    def node_ready(self, server: ServerState) -> bool:
        """Whether the node answers 200 at ``/-/readiness`` itself (not through HAProxy)."""
        host, port = _split(server.address)
        connection = http.client.HTTPConnection(host, port, timeout=2.0)
        try:
            connection.request("GET", "/-/readiness")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def node_inflight(self, server: ServerState) -> int | None:
        """The node's own count of requests in flight (``inflight_path``); None when it gives none."""
        if not self.config.inflight_path:
            return None
        host, port = _split(server.address)
        return inflight_requests(host, port, self.config.inflight_path, timeout=2.0)

    def node_drained(self, server: ServerState) -> bool:
        """Whether a drained node has nothing in flight: no HAProxy session, or no request it counts.

        Its own count leaves websockets out, which HAProxy's sessions hold for as long as they live.
        """
        return server.sessions == 0 or self.node_inflight(server) == 0

    def wait_drained(self, node: str) -> ServerState:
        """Wait, up to ``drain_timeout``, until the node (drained in HAProxy) is :meth:`node_drained`."""
        what = "sessions reaching 0" + (
            f" or {self.config.inflight_path} answering 0 requests" if self.config.inflight_path else ""
        )
        return self.runtime.wait_for(
            self.config.backend, self.server_name(node), self.node_drained, self.config.drain_timeout, what
        )

    # -- Platform and the Rails nodes by version -----------------------------------------------------

    def group_name(self, version: Version) -> str:
        """``rails-<version>``."""
        return f"rails-{version}"

    def groups(self) -> Sequence[InstanceGroup]:
        """The Rails nodes that answer, grouped by version, oldest first."""
        by_version: dict[Version, list[Instance]] = {}
        for server in self.servers():
            version = self.server_version(server)
            if version is None:
                continue
            by_version.setdefault(version, []).append(
                Instance(
                    id=server.name,
                    group=self.group_name(version),
                    version=str(version),
                    address=server.address,
                    ready=server.status.startswith(("UP", "DRAIN")) or server.status == "no check",
                    alive=True,
                    routed=server.routed,
                )
            )
        return [
            InstanceGroup(self.group_name(version), version, tuple(instances))
            for version, instances in sorted(by_version.items())
        ]

    def hold_lock(self, holder: str) -> AbstractContextManager[None]:
        """Hold ``<state dir>/upgrade.lock`` (flock) on this machine for the upgrade."""
        return file_lock(self.state_dir / "upgrade.lock", self.env.target.name, holder)

    def check_health(self) -> list[str]:
        """Rails nodes HAProxy should route to but finds DOWN, and that do not answer readiness either.

        A drained node is not a problem; nor is one whose ``/-/readiness`` answers while HAProxy's
        health checks have not marked it UP yet (they catch up within ``rise`` checks).

        Before that, :meth:`check_mapping` and :meth:`check_version_overrides`: an HAProxy zdu cannot
        drain through, a backend that does not list the Rails hosts as the inventory has them, or an
        inventory that installs a package ``gitlab_version`` does not choose is refused here, in
        preflight, before anything changes.
        """
        problems = self.check_mapping() + self.check_version_overrides()
        if problems:
            return problems
        return [
            f"{server.name} is {server.status} in HAProxy and not ready"
            for server in self.servers()
            if not server.draining and not server.routed and not self.node_ready(server)
        ]

    def close(self) -> None:
        """Nothing to release."""
