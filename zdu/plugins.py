"""The public plugin API: everything a plugin imports from zdu, in one module.

Write ``from zdu.plugins import hookimpl, StrategyPlugin, UpgradeContext, Version``: every name a
plugin needs (the hook marker and the registration records, errors, the model, the contexts,
strategies' steps, platform and migration protocols, secrets, configuration, the plugin manager, the
journal, and helpers for processes, ports, files and locks and the command line) is re-exported here,
and only this module's names are the API plugins may rely on. The modules they come from may move;
this import path is stable. Import-linter contracts (``pyproject.toml``) hold the first-party plugins
to it.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names match the hook
specifications in :mod:`zdu.hookspecs`. It is found through an entry point in group ``zdu``::

    [project.entry-points.zdu]
    my-strategies = "my_package.zdu_plugin"

Importing this module stays cheap: the command line's helpers, the orchestrator, fleets and reports
are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdu.config import (
    ComponentSpec,
    ProbeSpec,
    UpgradeConfig,
    load_config,
    structure,
    unstructure,
)
from zdu.context import (
    PROMOTE_EVENT,
    RESTORED_EVENT,
    ProbeGate,
    UpgradeContext,
    UpgradeInfo,
    UpgradePaused,
    measurement_data,
)
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
from zdu.executor import (
    LocalCommandExecutor,
)
from zdu.files import (
    replace_atomically,
)
from zdu.journal import (
    Journal,
    UpgradeRecord,
    default_journal_path,
    default_state_dir,
)
from zdu.lazy import lazy_getattr
from zdu.locks import (
    file_lock,
)
from zdu.migrations import (
    FINISHED_STATUSES,
    BackgroundMigration,
    BackgroundMigrationSource,
    CommandError,
    CommandExecutor,
    CommandResult,
    CommandTimeout,
    MigrationEnv,
    MigrationError,
    MigrationRunner,
    MigrationTiming,
    Stage,
    check_background_migrations,
    migration_timings,
    wait_for_background_migrations,
)
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
from zdu.network import (
    established_connections,
    format_address,
    free_port,
    http_status,
    inflight_requests,
)
from zdu.platform import (
    AFFINITY,
    ASSET_STORE,
    CAPABILITIES,
    COMMAND_HOST,
    INSTANCE_GROUPS,
    OMNIBUS_NODES,
    PREVIEW_ROUTE,
    SCALE_TOGETHER,
    TRAFFIC_SPLIT,
    WEIGHTS_ON_OFF,
    WEIGHTS_PER_GROUP,
    WEIGHTS_PER_INSTANCE,
    Affinity,
    AssetStore,
    CanaryRoute,
    Capability,
    CommandHost,
    DryRunsChanges,
    Infrastructure,
    InfrastructureChange,
    Instance,
    InstanceGroup,
    InstanceGroups,
    OmnibusNodes,
    Platform,
    PlatformEnv,
    PreviewRoute,
    RecordsChanges,
    ReportsLockLoss,
    RoutedGroups,
    Router,
    RoutesAssets,
    ScalesTogether,
    ServesAssets,
    SplitsTraffic,
    platform_provides,
    remove_managed_routes,
    require_capability,
    routed_versions,
    running_versions,
    weight_semantics,
)
from zdu.policy import (
    LAST_MINOR,
    REQUIRED_STOP_MINORS,
    check_upgrade_path,
    next_minor,
)
from zdu.probe import (
    GateAware,
    GateSettings,
    Probe,
    ProbeContext,
)
from zdu.processes import (
    ProcessIdentity,
    spawn,
    stop_processes,
    tail,
    wait_for_exits,
)
from zdu.records import (
    PROJECT_NAME,
    MigrationRunnerPlugin,
    NoConfig,
    PlatformPlugin,
    PluginRecord,
    ProbePlugin,
    StrategyPlugin,
    TrafficLayerPlugin,
    hookimpl,
)
from zdu.registry import (
    DISABLE_ENV,
    PluginFailure,
    ZduPluginManager,
    get_plugin_manager,
)
from zdu.secret import (
    REDACTED,
    Secret,
    redact,
    register_secret,
)
from zdu.strategy import (
    Step,
    Strategy,
    TrafficLayer,
)

if TYPE_CHECKING:
    from zdu.console import (
        EXIT_BAD_INPUT,
        EXIT_BUSY,
        EXIT_FAILED,
        EXIT_PAUSED,
        ProgressObserver,
        WarningSummary,
        emit,
        interruptible,
        manager_from,
        report_exit_code,
        stderr_console,
    )
    from zdu.fleet import (
        Fleet,
        load_fleet,
    )
    from zdu.fleet_run import (
        FleetReport,
        FleetRunner,
    )
    from zdu.report import (
        UpgradeView,
        load_view,
        render_html,
        render_index,
        render_text,
    )
    from zdu.upgrade import (
        Plan,
        Upgrade,
        current_version,
    )

#: Names imported on first use (they pull in click, rich or the orchestrator), and their modules.
_LAZY = {
    "EXIT_BAD_INPUT": "zdu.console",
    "EXIT_BUSY": "zdu.console",
    "EXIT_FAILED": "zdu.console",
    "EXIT_PAUSED": "zdu.console",
    "Fleet": "zdu.fleet",
    "FleetReport": "zdu.fleet_run",
    "FleetRunner": "zdu.fleet_run",
    "Plan": "zdu.upgrade",
    "ProgressObserver": "zdu.console",
    "Upgrade": "zdu.upgrade",
    "UpgradeView": "zdu.report",
    "WarningSummary": "zdu.console",
    "current_version": "zdu.upgrade",
    "emit": "zdu.console",
    "interruptible": "zdu.console",
    "load_fleet": "zdu.fleet",
    "load_view": "zdu.report",
    "manager_from": "zdu.console",
    "render_html": "zdu.report",
    "render_index": "zdu.report",
    "render_text": "zdu.report",
    "report_exit_code": "zdu.console",
    "stderr_console": "zdu.console",
}


__getattr__ = lazy_getattr("zdu.plugins", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AFFINITY",
    "ASSET_STORE",
    "CAPABILITIES",
    "COMMAND_HOST",
    "DISABLE_ENV",
    "EXIT_BAD_INPUT",
    "EXIT_BUSY",
    "EXIT_FAILED",
    "EXIT_PAUSED",
    "FINISHED_STATUSES",
    "INSTANCE_GROUPS",
    "LAST_MINOR",
    "OMNIBUS_NODES",
    "PREVIEW_ROUTE",
    "PROJECT_NAME",
    "PROMOTE_EVENT",
    "REDACTED",
    "REQUIRED_STOP_MINORS",
    "RESTORED_EVENT",
    "SCALE_TOGETHER",
    "TRAFFIC_SPLIT",
    "WEIGHTS_ON_OFF",
    "WEIGHTS_PER_GROUP",
    "WEIGHTS_PER_INSTANCE",
    "Affinity",
    "AssetStore",
    "BackgroundMigration",
    "BackgroundMigrationSource",
    "CanaryRoute",
    "Capability",
    "CommandError",
    "CommandExecutor",
    "CommandHost",
    "CommandResult",
    "CommandTimeout",
    "ComponentSpec",
    "ConfigError",
    "DryRunsChanges",
    "Event",
    "Fleet",
    "FleetReport",
    "FleetRunner",
    "GateAware",
    "GateFailed",
    "GateSettings",
    "Infrastructure",
    "InfrastructureChange",
    "Instance",
    "InstanceGroup",
    "InstanceGroups",
    "Journal",
    "LocalCommandExecutor",
    "Measurement",
    "MeasurementStatus",
    "MigrationEnv",
    "MigrationError",
    "MigrationRunner",
    "MigrationRunnerPlugin",
    "MigrationTiming",
    "NoConfig",
    "OmnibusNodes",
    "Phase",
    "Plan",
    "Platform",
    "PlatformEnv",
    "PlatformError",
    "PlatformPlugin",
    "PluginFailure",
    "PluginNotFound",
    "PluginRecord",
    "PreflightError",
    "PreviewRoute",
    "Probe",
    "ProbeContext",
    "ProbeGate",
    "ProbePlugin",
    "ProbeSpec",
    "ProcessIdentity",
    "ProgressObserver",
    "ReadinessTimeout",
    "RecordsChanges",
    "Release",
    "Report",
    "ReportsLockLoss",
    "RollbackRefused",
    "RoutedGroups",
    "Router",
    "RoutesAssets",
    "ScalesTogether",
    "Secret",
    "ServesAssets",
    "SplitsTraffic",
    "Stage",
    "Step",
    "Strategy",
    "StrategyPlugin",
    "Target",
    "TargetBusy",
    "TrafficLayer",
    "TrafficLayerPlugin",
    "Upgrade",
    "UpgradeConfig",
    "UpgradeContext",
    "UpgradeInfo",
    "UpgradeInterrupted",
    "UpgradePaused",
    "UpgradeRecord",
    "UpgradeStatus",
    "UpgradeView",
    "UsageError",
    "Verdict",
    "VerdictStatus",
    "Version",
    "VersionError",
    "WarningSummary",
    "ZduError",
    "ZduPluginManager",
    "check_background_migrations",
    "check_upgrade_path",
    "current_version",
    "default_journal_path",
    "default_state_dir",
    "emit",
    "established_connections",
    "file_lock",
    "format_address",
    "free_port",
    "get_plugin_manager",
    "hookimpl",
    "http_status",
    "inflight_requests",
    "interruptible",
    "load_config",
    "load_fleet",
    "load_view",
    "manager_from",
    "measurement_data",
    "migration_timings",
    "next_minor",
    "platform_provides",
    "redact",
    "register_secret",
    "remove_managed_routes",
    "render_html",
    "render_index",
    "render_text",
    "replace_atomically",
    "report_exit_code",
    "require_capability",
    "routed_versions",
    "running_versions",
    "spawn",
    "stderr_console",
    "stop_processes",
    "structure",
    "tail",
    "unstructure",
    "wait_for_background_migrations",
    "wait_for_exits",
    "weight_semantics",
]
