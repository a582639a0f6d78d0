"""``get``: upgrade a GET environment in GitLab's zero-downtime order, draining each Rails node.

What GET's own zero-downtime playbook does: Terraform, then Ansible component by component, back to
front: consul → postgres → pgbouncer → redis → gitaly → praefect → the Rails deploy node (regular
migrations, ``SKIP_POST_DEPLOYMENT_MIGRATIONS=true``) → the other Rails nodes one at a time → sidekiq;
the post-deployment migrations on the deploy node come last (the ``get-post-deployment`` migration
runner, in phase ``migrate(post)``, the point of no return).

What zdu adds: Terraform's plan is checked before it is applied (no destroy, no replace); each Rails
node leaves HAProxy before it is touched (``state drain``; its sessions reach 0, or the requests in
flight the node counts at ``inflight_path`` do, so websockets do not hold it) and returns once its
``/-/readiness`` answers (``state ready``); the probes gate every node; the first node that fails is put
back on the old version and in HAProxy, and the nodes after it are never touched.
"""

from __future__ import annotations

from typing import Any

from zdu.plugins import OmnibusNodes, PlatformError, Step, UpgradeContext, UsageError, Version, ZduError
from zdu_get.ansible import journal_tasks
from zdu_get.config import COMPONENT_ORDER, GetStrategyConfig

__all__ = ["GetStrategy", "NodeFailed"]

BACKEND_COMPONENTS = COMPONENT_ORDER[: COMPONENT_ORDER.index("gitlab_rails")]


class NodeFailed(ZduError):
    """A Rails node failed its upgrade; it was put back on the old version, later nodes untouched."""


class GetStrategy:
    """The ``get`` strategy (see the module's docstring); requires the capability ``omnibus-nodes``."""

    def __init__(self, config: GetStrategyConfig) -> None:
        self.config = config

    # -- planning ------------------------------------------------------------------------------------

    def _hosts(self, omnibus: OmnibusNodes, component: str) -> list[str]:
        return omnibus.hosts(self.config.group(component).hosts)

    def _rails_nodes(self, omnibus: OmnibusNodes) -> list[str]:
        nodes = self._hosts(omnibus, "gitlab_rails")
        deploy = self.config.deploy_node or (nodes[0] if nodes else "")
        if deploy and deploy not in nodes:
            raise UsageError(f"strategy.deploy_node: {deploy!r} is not one of the Rails hosts {nodes}")
        return [deploy, *(n for n in nodes if n != deploy)] if deploy else []

    def plan(self, ctx: UpgradeContext) -> list[Step]:
        """Terraform, the inventory's version, then every component present in the inventory, in order."""
        omnibus = ctx.omnibus_nodes
        version = ctx.release.version
        steps = []
        if omnibus.infrastructure(version) is not None:
            steps.append(
                Step("rollout", "terraform", "plan to a file, refuse destroy/replace, apply that plan")
            )
        steps.append(Step("rollout", "inventory", f"gitlab_version: {version} in {omnibus.inventory_file}"))
        for component in COMPONENT_ORDER:
            hosts = self._hosts(omnibus, component)
            if not hosts:
                steps.append(Step("rollout", "skip", f"{component}: no host in the inventory"))
            elif component == "gitlab_rails":
                for index, node in enumerate(self._rails_nodes(omnibus)):
                    how = "drain, upgrade, readiness, ready" if self.config.drain else "upgrade (no drain)"
                    migrations = (
                        " with regular migrations (SKIP_POST_DEPLOYMENT_MIGRATIONS=true)"
                        if index == 0
                        else ""
                    )
                    steps.append(Step("rollout", "rails node", f"{node}: {how}{migrations}; probes gate"))
            else:
                steps.append(Step("rollout", "ansible", f"{component}: {', '.join(hosts)}"))
        return steps

    # -- rollout -------------------------------------------------------------------------------------

    def _run_component(
        self, ctx: UpgradeContext, omnibus: OmnibusNodes, component: str, version: Version
    ) -> None:
        group = self.config.group(component)
        hosts = self._hosts(omnibus, component)
        if not hosts:
            ctx.event(
                "skipped",
                f"{component}: no host in the inventory matches {group.hosts!r}",
                component=component,
            )
            return
        with ctx.step(f"ansible {component} on {', '.join(hosts)}", component=component):
            omnibus.run_playbook(
                component,
                group.hosts,
                playbook=group.playbook or None,
                role=group.role or None,
                extravars={"gitlab_version": str(version)},
                on_task=journal_tasks(ctx, component),
            )

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
            ctx.gate(f"ansible {component}")
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
                self._restore_node(ctx, omnibus, node)
                untouched = nodes[index + 1 :]
                raise NodeFailed(
                    f"rails node {node} failed: {error}; {node} is back on {ctx.from_version} in HAProxy"
                    + (f"; not touched: {', '.join(untouched)}" if untouched else "")
                ) from error
        self._run_component(ctx, omnibus, "sidekiq", version)

    def _upgrade_node(
        self, ctx: UpgradeContext, omnibus: OmnibusNodes, node: str, version: Version, *, deploy: bool
    ) -> None:
        """Drain (when configured), upgrade through Ansible, wait for readiness, make ready, wait UP."""
        if self.config.drain:
            with ctx.step(f"drain {node}", node=node):
                omnibus.drain_node(node)
        group = self.config.group("gitlab_rails")
        extravars: dict[str, Any] = {"gitlab_version": str(version)}
        if deploy:
            extravars["skip_post_deployment_migrations"] = True
        label = f"rails node {node}" + (" (deploy node)" if deploy else "")
        with ctx.step(f"ansible gitlab_rails on {node} to {version}", node=node, deploy=deploy):
            omnibus.run_playbook(
                label,
                node,
                playbook=group.playbook or None,
                role=group.role or None,
                extravars=extravars,
                on_task=journal_tasks(ctx, label),
            )
        self._back_in_service(ctx, omnibus, node)

    def _back_in_service(self, ctx: UpgradeContext, omnibus: OmnibusNodes, node: str) -> None:
        with ctx.step(f"readiness of {node}", node=node):
            omnibus.return_node(node, undrain=self.config.drain)

    def _restore_node(self, ctx: UpgradeContext, omnibus: OmnibusNodes, node: str) -> None:
        """Put a node that failed back on the old version, drained while it changes, then in HAProxy."""
        with ctx.step(f"restore {node} to {ctx.from_version}", node=node):
            omnibus.drain_node(node, wait=False)
            group = self.config.group("gitlab_rails")
            label = f"rails node {node} (restore)"
            omnibus.run_playbook(
                label,
                node,
                playbook=group.playbook or None,
                role=group.role or None,
                extravars={"gitlab_version": str(ctx.from_version)},
                on_task=journal_tasks(ctx, label),
            )
            omnibus.return_node(node)

    def finalize(self, ctx: UpgradeContext) -> None:
        """Nothing to remove: the nodes were upgraded in place."""

    def rollback(self, ctx: UpgradeContext) -> None:
        """The inventory's version back, Rails nodes on the new version back one by one, sidekiq back.

        Consul, PostgreSQL, PgBouncer, Redis, Gitaly and Praefect stay on the new version (GitLab does
        not support downgrading them; they serve the old Rails version) and Terraform's changes stay.
        """
        omnibus = ctx.omnibus_nodes
        with ctx.step(f"set gitlab_version {ctx.from_version} in {omnibus.inventory_file}"):
            omnibus.set_inventory_version(ctx.from_version)
        changed = False
        for node in reversed(self._rails_nodes(omnibus)):
            try:
                if omnibus.node_version(node) == ctx.from_version and omnibus.node_routed(node):
                    continue
            except PlatformError:
                continue
            changed = True
            self._restore_node(ctx, omnibus, node)
        if changed:
            self._run_component(ctx, omnibus, "sidekiq", ctx.from_version)
        ctx.event(
            "rollback-scope",
            "backend components (consul ... praefect) and Terraform's changes are left as they are",
        )
