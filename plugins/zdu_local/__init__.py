"""The local platform, the embedded default: processes on this machine behind a real nginx.

Also ships the GitLab-like demo app (``python -m zdu_demo.demo_app``), the ``zdu local up|down``
commands and ``zdu demo``. Registered through the entry point ``local`` in group ``zdu``, exactly as a
third-party plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from zdu.plugins import (
    AFFINITY,
    ASSET_STORE,
    INSTANCE_GROUPS,
    PREVIEW_ROUTE,
    SCALE_TOGETHER,
    TRAFFIC_SPLIT,
    PlatformPlugin,
    hookimpl,
)

if TYPE_CHECKING:
    import click

# The platform and the commands are imported inside the hooks: every demo-app instance imports this
# package first (python -m zdu_demo.demo_app), and should start in milliseconds, not load click.


@hookimpl
def zdu_platforms() -> Iterator[PlatformPlugin[Any]]:
    """Register ``local``."""
    from zdu_local.config import LocalPlatformConfig  # noqa: PLC0415
    from zdu_local.platform import LocalPlatform  # noqa: PLC0415

    yield PlatformPlugin(
        name="local",
        summary="processes on this machine behind a real nginx, changed only by graceful reloads",
        config=LocalPlatformConfig,
        factory=LocalPlatform,
        provides={INSTANCE_GROUPS, SCALE_TOGETHER, PREVIEW_ROUTE, AFFINITY, TRAFFIC_SPLIT, ASSET_STORE},
    )


@hookimpl
def zdu_commands(cli: click.Group) -> None:
    """Add ``zdu local up|down``, ``zdu demo`` and ``zdu fleet demo``."""
    import click  # noqa: PLC0415

    from zdu_local.commands import demo, local  # noqa: PLC0415 - click commands load with the CLI only

    cli.add_command(local)
    cli.add_command(demo)
    fleet = cli.commands.get("fleet")
    if isinstance(fleet, click.Group):
        from zdu_local.fleet_commands import fleet_demo  # noqa: PLC0415

        fleet.add_command(fleet_demo)
