"""zdu: zero-downtime upgrades of GitLab deployments, measured.

The public API::

    import zdu

    upgrade = zdu.Upgrade.from_config("cell.toml")
    report = upgrade.run()
    assert report.ok, report.summary()

Plugin authors import from :mod:`zdu.plugins`. Importing ``zdu`` loads no plugin.
"""

from zdu.config import UpgradeConfig, load_config
from zdu.context import UpgradeContext, UpgradeInfo, UpgradePaused
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
    "get_plugin_manager",
    "load_config",
]
