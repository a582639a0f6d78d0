"""``get-post-deployment``: the post-deployment migrations on the deploy node, through Ansible.

GitLab's regular migrations run on the deploy node (GET's ``gitlab_rails_primary``) while the ``get``
strategy upgrades it with ``SKIP_POST_DEPLOYMENT_MIGRATIONS=true`` in the environment, so this runner's
``pre`` stage has nothing to do. Its ``post`` stage runs the configured playbook (``gitlab-rake
db:migrate``, without that variable) on the deploy node in phase ``migrate(post)``, once every Rails and
Sidekiq node runs the release: the point of no return.
"""

from __future__ import annotations

from zdu.plugins import MigrationEnv, Stage, UpgradeContext, UsageError
from zdu_get.ansible import journal_tasks
from zdu_get.config import GetPostDeploymentConfig

__all__ = ["GetPostDeploymentRunner"]


class GetPostDeploymentRunner:
    """Runs the post-deployment migrations playbook on the deploy node (requires ``omnibus-nodes``)."""

    def __init__(self, config: GetPostDeploymentConfig, env: MigrationEnv) -> None:
        self.config = config
        self.nodes = env.omnibus_nodes

    def deploy_node(self) -> str:
        """The configured deploy node, else the one host of ``primary_group``."""
        if self.config.deploy_node:
            return self.config.deploy_node
        hosts = self.nodes.hosts(self.config.primary_group)
        if len(hosts) != 1:
            raise UsageError(
                f"migrations.primary_group: the inventory group {self.config.primary_group!r} has "
                f"{len(hosts)} hosts ({', '.join(hosts) or 'none'}), not one; or set migrations.deploy_node"
            )
        return hosts[0]

    def pending(self, stage: Stage) -> list[str]:
        """``post``: the one playbook run on the deploy node; ``pre``: nothing (done during the rollout)."""
        if stage is Stage.PRE:
            return []
        return [f"{self.config.playbook or self.config.role} on {self.deploy_node()}"]

    def run(self, stage: Stage, ctx: UpgradeContext) -> list[str]:
        """Run the post-deployment migrations playbook on the deploy node (``post`` only)."""
        if stage is Stage.PRE:
            ctx.event("migrations", "regular migrations run on the deploy node during the rollout")
            return []
        node = self.deploy_node()
        label = f"post-deployment migrations on {node}"

        with ctx.step(label, node=node):
            self.nodes.run_playbook(
                label,
                node,
                playbook=None if self.config.role else self.config.playbook,
                role=self.config.role or None,
                extravars={"gitlab_version": str(ctx.release.version)},
                on_task=journal_tasks(ctx, label),
            )
        return self.pending(Stage.POST)

    def reversible(self, stage: Stage) -> bool:
        """``pre`` has nothing to undo; ``post`` cannot be undone."""
        return stage is Stage.PRE
