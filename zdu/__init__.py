"""zdu: zero-downtime upgrades of GitLab deployments, measured.

The public API::

    import zdu

    upgrade = zdu.Upgrade.from_config("cell.toml")
    report = upgrade.run()
    assert report.ok, report.summary()

An operator steers a running upgrade from another process (as ``zdu pause|abort|promote ID`` do)::

    zdu.pause(upgrade_id)                 # stops at its next safe point, paused
    zdu.abort(upgrade_id)                 # rolls back (before the point of no return)
    zdu.promote(upgrade_id, full=False)   # skips the remaining waits and pauses

Plugin authors import from :mod:`zdu.plugins`. Importing ``zdu`` loads no plugin, and the names
below are imported on first use, so that ``import zdu.plugins`` (which every plugin does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdu.lazy import lazy_getattr

if TYPE_CHECKING:
    from zdu.config import UpgradeConfig, load_config
    from zdu.context import UpgradeAborted, UpgradeContext, UpgradeInfo, UpgradePaused
    from zdu.controls import abort, pause, promote
    from zdu.errors import (
        ConfigError,
        GateFailed,
        PlatformError,
        PluginNotFound,
        PreflightError,
        ReadinessTimeout,
        RollbackRefused,
        TargetBusy,
        UpgradeInterrupted,
        UsageError,
        VersionError,
        ZduError,
    )
    from zdu.journal import Journal
    from zdu.model import (
        Event,
        Measurement,
        MeasurementStatus,
        Phase,
        Release,
        Report,
        Target,
        UpgradeStatus,
        Verdict,
        VerdictStatus,
        Version,
    )
    from zdu.registry import ZduPluginManager, get_plugin_manager
    from zdu.secret import Secret
    from zdu.upgrade import Plan, Upgrade

_LAZY = {
    "ConfigError": "zdu.errors",
    "Event": "zdu.model",
    "GateFailed": "zdu.errors",
    "Journal": "zdu.journal",
    "Measurement": "zdu.model",
    "MeasurementStatus": "zdu.model",
    "Phase": "zdu.model",
    "Plan": "zdu.upgrade",
    "PlatformError": "zdu.errors",
    "PluginNotFound": "zdu.errors",
    "PreflightError": "zdu.errors",
    "ReadinessTimeout": "zdu.errors",
    "Release": "zdu.model",
    "Report": "zdu.model",
    "RollbackRefused": "zdu.errors",
    "Secret": "zdu.secret",
    "Target": "zdu.model",
    "TargetBusy": "zdu.errors",
    "Upgrade": "zdu.upgrade",
    "UpgradeConfig": "zdu.config",
    "UpgradeAborted": "zdu.context",
    "UpgradeContext": "zdu.context",
    "UpgradeInfo": "zdu.context",
    "UpgradeInterrupted": "zdu.errors",
    "UpgradePaused": "zdu.context",
    "UpgradeStatus": "zdu.model",
    "UsageError": "zdu.errors",
    "Verdict": "zdu.model",
    "VerdictStatus": "zdu.model",
    "Version": "zdu.model",
    "VersionError": "zdu.errors",
    "ZduError": "zdu.errors",
    "ZduPluginManager": "zdu.registry",
    "get_plugin_manager": "zdu.registry",
    "abort": "zdu.controls",
    "load_config": "zdu.config",
    "pause": "zdu.controls",
    "promote": "zdu.controls",
}


__getattr__ = lazy_getattr("zdu", _LAZY, globals())


__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Event",
    "GateFailed",
    "Journal",
    "Measurement",
    "MeasurementStatus",
    "Phase",
    "Plan",
    "PlatformError",
    "PluginNotFound",
    "PreflightError",
    "ReadinessTimeout",
    "Release",
    "Report",
    "RollbackRefused",
    "Secret",
    "Target",
    "TargetBusy",
    "Upgrade",
    "UpgradeAborted",
    "UpgradeConfig",
    "UpgradeContext",
    "UpgradeInfo",
    "UpgradeInterrupted",
    "UpgradePaused",
    "UpgradeStatus",
    "UsageError",
    "Verdict",
    "VerdictStatus",
    "Version",
    "VersionError",
    "ZduError",
    "ZduPluginManager",
    "__version__",
    "abort",
    "get_plugin_manager",
    "load_config",
    "pause",
    "promote",
]
