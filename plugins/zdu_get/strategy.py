"""``get``: upgrade a GET environment in GitLab's zero-downtime order, host by host, draining Rails nodes.

What GET's own zero-downtime upgrade does, on GET's layout (playbooks in ``ansible/playbooks/``, GET's
inventory groups): Terraform, then Ansible component by component, back to front, **one host at a
time** with the probes gating after each host: consul → postgres → pgbouncer → redis (or
``redis_cache`` / ``redis_persistent``) → gitaly → praefect (the ``praefect_primary`` host first) → the
Rails primary (``gitlab_rails_primary``: GET's Rails role migrates there) → the other Rails nodes →
sidekiq. Every run has ``SKIP_POST_DEPLOYMENT_MIGRATIONS=true`` in its environment (GET reads the
environment variable, not an extra var), so the primary runs the regular migrations only; the
post-deployment ones come last (the ``get-post-deployment`` runner, in phase ``migrate(post)``, once
every Rails and Sidekiq node runs the release: the point of no return).

What zdu adds: Terraform's plan is checked before it is applied (empty, or allow-listed in-place
changes only); each Rails node leaves every HAProxy backend that lists it before it is touched and
returns once its ``/-/readiness`` answers; a host no component covers, or a group set explicitly that
matches nothing, is refused in preflight; a rollback that would need a package downgrade (GET installs
without allowing one) is refused before it changes anything, unless ``allow_downgrade``.
"""

from __future__ import annotations

from zdu.plugins import OmnibusNodes, PlatformError, Step, UpgradeContext, UsageError, Version, ZduError
from zdu_get.ansible import journal_tasks
from zdu_get.config import COMPONENT_ORDER, AnsibleGroup, GetStrategyConfig

__all__ = ["GetStrategy", "NodeFailed", "RollbackRefused"]

BACKEND_COMPONENTS = COMPONENT_ORDER[: COMPONENT_ORDER.index("gitlab_rails")]

#: GET's Rails role runs every migration unless this is set in its environment.
SKIP_POST = {"SKIP_POST_DEPLOYMENT_MIGRATIONS": "true"}


class NodeFailed(ZduError):
    """A Rails node failed its upgrade; later nodes untouched (it was put back, or left drained)."""


class RollbackRefused(ZduError):
    """A rollback would need a package downgrade GET cannot do; nothing was changed."""


class GetStrategy:
    """The ``get`` strategy (see the module's docstring); requires the capability ``omnibus-nodes``."""

    def __init__(self, config: GetStrategyConfig) -> None:
        self.config = config

    # -- planning ------------------------------------------------------------------------------------

    def _hosts(self, omnibus: OmnibusNodes, component: str) -> list[str]:
        hosts = omnibus.hosts(self.config.group(component).hosts)
        if component == "praefect":
            primary = omnibus.hosts(self.config.praefect_primary_group)
            hosts = [h for h in primary if h in hosts] + [h for h in hosts if h not in primary]
        return hosts

    def _deploy_node(self, omnibus: OmnibusNodes, nodes: list[str]) -> str:
        if self.config.deploy_node:
            deploy = self.config.deploy_node
            where = "strategy.deploy_node"
        else:
            primary = omnibus.hosts(self.config.primary_group)
            if len(primary) != 1:
                raise UsageError(
                    f"strategy.primary_group: the inventory group {self.config.primary_group!r} has "
                    f"{len(primary)} hosts ({', '.join(primary) or 'none'}); GET's Rails role migrates on "
                    "its one host: add it to the inventory, or set strategy.deploy_node"
                )
            deploy, where = primary[0], f"the {self.config.primary_group} host"
        if deploy not in nodes:
            raise UsageError(f"{where} {deploy!r} is not one of the Rails hosts {nodes}")
        return deploy

    def _rails_nodes(self, omnibus: OmnibusNodes) -> list[str]:
        nodes = self._hosts(omnibus, "gitlab_rails")
        if not nodes:
            return []
        deploy = self._deploy_node(omnibus, nodes)
        return [deploy, *(n for n in nodes if n != deploy)]

    def check_inventory(self, omnibus: OmnibusNodes) -> None:
        """Refuse what would be skipped silently. Reads only.

        A group set explicitly that matches nothing, a host that no component covers (nor
        ``other_groups``), no Rails node at all.
        """
        for component in COMPONENT_ORDER:
            if self.config.configured_hosts(component) and not self._hosts(omnibus, component):
                raise UsageError(
                    f"strategy.groups.{component}.hosts: {self.config.group(component).hosts!r} "
                    "matches no host in the inventory"
                )
        if not self._hosts(omnibus, "gitlab_rails"):
            raise UsageError(
                f"no Rails node: {self.config.group('gitlab_rails').hosts!r} matches no host in the inventory"
            )
        covered = {h for c in COMPONENT_ORDER for h in self._hosts(omnibus, c)}
        covered.update(h for group in self.config.other_groups for h in omnibus.hosts(group))
        uncovered = [h for h in omnibus.hosts("all") if h not in covered]
        if uncovered:
            raise UsageError(
                f"no component upgrades the inventory's hosts {', '.join(uncovered)}: add their group to "
                "strategy.groups (the component that runs there) or to strategy.other_groups (upgraded "
                "outside zdu); zdu does not skip them silently"
            )

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Terraform, the inventory's version, then every host of every component, in order.

        Refuses (UsageError, in preflight) an inventory :meth:`check_inventory` refuses.
        """
        omnibus = ctx.omnibus_nodes
        version = ctx.release.version
        self.check_inventory(omnibus)
        steps = []
        if omnibus.infrastructure(version) is not None:
            steps.append(
                Step("rollout", "terraform", "plan to a file, refuse any change not allow-listed, apply it")
            )
        steps.append(Step("rollout", "inventory", f"gitlab_version: {version} in {omnibus.inventory_file}"))
        for component in COMPONENT_ORDER:
            hosts = self._hosts(omnibus, component)
            if not hosts:
                pattern = self.config.group(component).hosts
                steps.append(Step("rollout", "skip", f"{component}: {pattern!r} has no host"))
            elif component == "gitlab_rails":
                for index, node in enumerate(self._rails_nodes(omnibus)):
                    how = "drain, upgrade, readiness, ready" if self.config.drain else "upgrade (no drain)"
                    migrations = " with regular migrations" if index == 0 else ""
                    steps.append(Step("rollout", "rails node", f"{node}: {how}{migrations}; probes gate"))
            else:
                for host in hosts:
                    steps.append(Step("rollout", "ansible", f"{component} on {host}; probes gate"))
        if not self.config.allow_downgrade:
            steps.append(
                Step(
                    "rollback",
                    "refused",
                    "once a node runs the release (GET installs without allowing a downgrade)",
                )
            )
        return steps

    # -- rollout -------------------------------------------------------------------------------------

    def _run_component(
        self, ctx: UpgradeContext, omnibus: OmnibusNodes, component: str, version: Version
    ) -> None:
        """The component's playbook on each of its hosts in turn, the probes gating after each."""
        group = self.config.group(component)
        hosts = self._hosts(omnibus, component)
        if not hosts:
            ctx.event(
                "skipped",
                f"{component}: no host in the inventory matches {group.hosts!r}",
                component=component,
            )
            return
        for host in hosts:
            label = f"{component} on {host}"
            with ctx.step(f"ansible {label}", component=component, node=host):
                _play(ctx, omnibus, group, label, host, version)
            ctx.gate(f"ansible {label}")

    def _terraform(self, ctx: UpgradeContext, omnibus: OmnibusNodes) -> None:
        terraform = omnibus.infrastructure(ctx.release.version)
        if terraform is None:
            return
        with ctx.step("terraform plan"):
            changes = terraform.plan()
            ctx.event(
                "terraform-plan",
                f"{len(changes)} resource changes planned",
                changes=[{"address": c.address, "actions": list(c.actions)} for c in changes],
            )
            terraform.refuse_destruction(changes)
        if changes:
            with ctx.step("terraform apply (the saved plan)"):
                terraform.apply_saved_plan()

    def rollout(self, ctx: UpgradeContext) -> None:
        """Terraform, the inventory's version, the components in order, the Rails nodes one by one."""
        omnibus = ctx.omnibus_nodes
        version = ctx.release.version
        self._terraform(ctx, omnibus)
        with ctx.step(f"set gitlab_version {version} in {omnibus.inventory_file}"):
            omnibus.set_inventory_version(version)
        for component in BACKEND_COMPONENTS:
            self._run_component(ctx, omnibus, component, version)
        nodes = self._rails_nodes(omnibus)
        if not nodes:
            ctx.event("skipped", "gitlab_rails: no host in the inventory", component="gitlab_rails")
        for index, node in enumerate(nodes):
            if omnibus.node_version(node) == version and omnibus.node_routed(node):
                ctx.event("skipped", f"rails node {node} already serves {version}", node=node)
                continue
            try:
                self._upgrade_node(ctx, omnibus, node, version, deploy=index == 0)
                ctx.gate(f"rails node {node} on {version}")
            except ZduError as error:
                untouched = nodes[index + 1 :]
                rest = f"; not touched: {', '.join(untouched)}" if untouched else ""
                if not self._can_restore(omnibus, node, ctx.from_version):
                    omnibus.drain_node(node, wait=False)
                    raise NodeFailed(
                        f"rails node {node} failed: {error}; it is left drained (GET cannot reinstall "
                        f"{ctx.from_version} over the release: no downgrade){rest}"
                    ) from error
                self._restore_node(ctx, omnibus, node)
                raise NodeFailed(
                    f"rails node {node} failed: {error}; {node} is back on {ctx.from_version} in HAProxy"
                    + rest
                ) from error
        self._run_component(ctx, omnibus, "sidekiq", version)

    def _upgrade_node(
        self, ctx: UpgradeContext, omnibus: OmnibusNodes, node: str, version: Version, *, deploy: bool
    ) -> None:
        """Drain (when configured), upgrade through Ansible, wait for readiness, make ready, wait UP."""
        if self.config.drain:
            with ctx.step(f"drain {node}", node=node):
                omnibus.drain_node(node)
        label = f"rails node {node}" + (" (deploy node)" if deploy else "")
        with ctx.step(f"ansible gitlab_rails on {node} to {version}", node=node, deploy=deploy):
            _play(ctx, omnibus, self.config.group("gitlab_rails"), label, node, version)
        self._back_in_service(ctx, omnibus, node)

    def _back_in_service(self, ctx: UpgradeContext, omnibus: OmnibusNodes, node: str) -> None:
        with ctx.step(f"readiness of {node}", node=node):
            omnibus.return_node(node, undrain=self.config.drain)

    def _restore_node(self, ctx: UpgradeContext, omnibus: OmnibusNodes, node: str) -> None:
        """Put a node that failed back on the old version, drained while it changes, then in HAProxy."""
        with ctx.step(f"restore {node} to {ctx.from_version}", node=node):
            omnibus.drain_node(node, wait=False)
            group = self.config.group("gitlab_rails")
            _play(ctx, omnibus, group, f"rails node {node} (restore)", node, ctx.from_version)
            omnibus.return_node(node)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Nothing to remove: the nodes were upgraded in place."""

    def _can_restore(self, omnibus: OmnibusNodes, node: str, old: Version) -> bool:
        """Whether ``node`` can be put back on ``old``: it runs ``old`` already, or downgrades are allowed."""
        if self.config.allow_downgrade:
            return True
        try:
            return omnibus.node_version(node) == old
        except PlatformError:
            return False

    def rollback(self, ctx: UpgradeContext) -> None:
        """The inventory's version back, Rails nodes on the new version back one by one, sidekiq back.

        Consul, PostgreSQL, PgBouncer, Redis, Gitaly and Praefect stay on the new version (GitLab does
        not support downgrading them; they serve the old Rails version) and Terraform's changes stay.
        Without ``allow_downgrade``, a rollback that would reinstall the old package on a node that
        runs (or may run) the release is refused before anything changes: GET's playbooks install the
        package without allowing a downgrade, so the rollback would fail half-way.
        """
        omnibus = ctx.omnibus_nodes
        nodes = list(reversed(self._rails_nodes(omnibus)))
        todo = []
        for node in nodes:
            try:
                if omnibus.node_version(node) == ctx.from_version and omnibus.node_routed(node):
                    continue
            except PlatformError:
                pass
            todo.append(node)
        newer = [n for n in todo if not self._can_restore(omnibus, n, ctx.from_version)]
        if newer:
            raise RollbackRefused(
                f"rollback to {ctx.from_version} refused before any change: {', '.join(newer)} run (or may "
                f"run) {ctx.release.version} and GET installs the GitLab package without allowing a "
                "downgrade; the fleet is left as it is. Roll forward (fix and upgrade again), or restore "
                "the nodes as GitLab documents for a downgrade; set strategy.allow_downgrade only when "
                "your playbooks can install an older package"
            )
        with ctx.step(f"set gitlab_version {ctx.from_version} in {omnibus.inventory_file}"):
            omnibus.set_inventory_version(ctx.from_version)
        for node in todo:
            self._restore_node(ctx, omnibus, node)
        if todo:
            self._run_component(ctx, omnibus, "sidekiq", ctx.from_version)
        ctx.event(
            "rollback-scope",
            "backend components (consul ... praefect) and Terraform's changes are left as they are",
        )


def _play(
    ctx: UpgradeContext, omnibus: OmnibusNodes, group: AnsibleGroup, label: str, host: str, version: Version
) -> None:
    """Run the component's playbook (or role) on ``host`` for ``version``.

    Post-deployment migrations are skipped (GET reads the environment variable); every task result is
    journaled.
    """
    omnibus.run_playbook(
        label,
        host,
        playbook=group.playbook or None,
        role=group.role or None,
        extravars={"gitlab_version": str(version)},
        envvars=SKIP_POST,
        on_task=journal_tasks(ctx, label),
    )
