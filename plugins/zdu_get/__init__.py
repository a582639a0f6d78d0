"""GET-based upgrades: the ``get`` platform, the ``get`` strategy and the ``get-post-deployment`` runner.

Drives the GitLab Environment Toolkit's tools as they are (Terraform through python-terraform, Ansible
through ansible-runner) and adds what GET lacks: a checked Terraform plan, HAProxy drain of each Rails
node, probes gating every node. Needs ``zdu[get]``. Registered through the entry point ``get`` in group
``zdu``, exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zdu.plugins import (
    OMNIBUS_NODES,
    MigrationRunnerPlugin,
    PlatformPlugin,
    StrategyPlugin,
    Version,
    hookimpl,
)
from zdu_get.config import GetPlatformConfig, GetPostDeploymentConfig, GetStrategyConfig
from zdu_get.migrations import GetPostDeploymentRunner
from zdu_get.platform import GetPlatform
from zdu_get.strategy import GetStrategy

if TYPE_CHECKING:
    from zdu_demo.scenarios import DemoRow, DemoSettings, Scenario

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


@hookimpl(optionalhook=True)
def zdu_demo_run_scenarios(
    scenarios: Sequence[Scenario], settings: DemoSettings, start: Version, startup_delay: float
) -> Mapping[str, DemoRow] | None:
    """Run ``zdu demo``'s ``get`` scenarios on a GET-like fleet behind HAProxy (:mod:`zdu_get.demo`)."""
    ours = [s for s in scenarios if s.strategy == "get"]
    if not ours:
        return None
    from zdu_get.demo import run_get_scenarios  # noqa: PLC0415 - the demo's fleet only when asked

    return run_get_scenarios(ours, settings, start, startup_delay)
