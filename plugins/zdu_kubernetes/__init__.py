"""The kubernetes platform: a GitLab chart deployment, through the official ``kubernetes`` client.

Webservice Deployments by version, the Service selector and the ingress-nginx Ingress as the router,
an assets shim, migrations as Jobs of the release's toolbox image, and a Lease as the upgrade lock.
Registered through the entry point ``kubernetes`` in group ``zdu``; needs the extra ``zdu[kubernetes]``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from zdu.plugins import (
    AFFINITY,
    ASSET_STORE,
    COMMAND_HOST,
    INSTANCE_GROUPS,
    PREVIEW_ROUTE,
    TRAFFIC_SPLIT,
    PlatformPlugin,
    hookimpl,
)

# Without the extra, loading the plugin fails here, naming the module: the registry reports it with
# the extra that cures it ("install zdu[kubernetes]"). The client itself is imported only when used:
# it takes a while to import, and every zdu command loads every plugin.
if importlib.util.find_spec("kubernetes") is None:
    raise ModuleNotFoundError("No module named 'kubernetes'", name="kubernetes")


@hookimpl
def zdu_platforms() -> Iterator[PlatformPlugin[Any]]:
    """Register ``kubernetes``."""
    from zdu_kubernetes.config import KubernetesPlatformConfig  # noqa: PLC0415
    from zdu_kubernetes.platform import KubernetesPlatform  # noqa: PLC0415

    yield PlatformPlugin(
        name="kubernetes",
        summary="webservice Deployments by version behind a Service and ingress-nginx (official client)",
        config=KubernetesPlatformConfig,
        factory=KubernetesPlatform,
        provides={
            INSTANCE_GROUPS,
            PREVIEW_ROUTE,
            AFFINITY,
            TRAFFIC_SPLIT,
            ASSET_STORE,
            COMMAND_HOST,
        },
    )
