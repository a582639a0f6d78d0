"""GET-based upgrades: the ``get`` platform, the ``get`` strategy and the ``get-post-deployment`` runner.

Drives the GitLab Environment Toolkit's tools as they are (Terraform through python-terraform, Ansible
through ansible-runner) and adds what GET lacks: a checked Terraform plan, HAProxy drain of each Rails
node, probes gating every node. Needs ``zdu[get]``. Registered through the entry point ``get`` in group
``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zdu.platform import OMNIBUS_NODES
from zdu.plugins import MigrationRunnerPlugin, PlatformPlugin, StrategyPlugin, hookimpl
from zdu_get.config import GetPlatformConfig, GetPostDeploymentConfig, GetStrategyConfig
from zdu_get.migrations import GetPostDeploymentRunner
from zdu_get.platform import GetPlatform
from zdu_get.strategy import GetStrategy

__all__ = ["GetPlatform", "GetPostDeploymentRunner", "GetStrategy"]


@hookimpl
def zdu_platforms() -> Iterator[PlatformPlugin[Any]]:
    """Register ``get``."""
    yield PlatformPlugin(
        name="get",
        summary="an Omnibus fleet built by GET (Terraform, Ansible), Rails nodes behind HAProxy",
        config=GetPlatformConfig,
        factory=GetPlatform,
        provides={OMNIBUS_NODES},
    )


@hookimpl
def zdu_strategies() -> Iterator[StrategyPlugin[Any]]:
    """Register ``get``."""
    yield StrategyPlugin(
        name="get",
        summary="GET's zero-downtime order through Ansible, each Rails node drained in HAProxy",
        config=GetStrategyConfig,
        factory=GetStrategy,
        requires={OMNIBUS_NODES},
    )


@hookimpl
def zdu_migration_runners() -> Iterator[MigrationRunnerPlugin[Any]]:
    """Register ``get-post-deployment``."""
    yield MigrationRunnerPlugin(
        name="get-post-deployment",
        summary="post-deployment migrations on the deploy node through Ansible (regular ones: in rollout)",
        config=GetPostDeploymentConfig,
        factory=GetPostDeploymentRunner,
        requires={OMNIBUS_NODES},
    )
