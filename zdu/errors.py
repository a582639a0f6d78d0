"""The exceptions zdu raises.

:class:`UsageError` and its subclasses are bad input (configuration, versions, names, arguments): the
command line answers them with one line on stderr and exit code 2, before anything is changed.
Everything else under :class:`ZduError` is a failure while acting.
"""

from __future__ import annotations

from zdu.secret import redact

__all__ = [
    "ConfigError",
    "GateFailed",
    "JournalError",
    "PlatformError",
    "PluginNotFound",
    "PreflightError",
    "ReadinessTimeout",
    "RollbackRefused",
    "TargetBusy",
    "UpgradeInterrupted",
    "UsageError",
    "VersionError",
    "ZduError",
]


class ZduError(Exception):
    """Base class of every error zdu raises on purpose. Its text never holds a registered secret."""

    def __str__(self) -> str:
        return str(redact(super().__str__()))


class UsageError(ZduError):
    """Bad input: the caller must change what it asked for. Exit code 2 at the command line."""


class ConfigError(UsageError):
    """A configuration field is missing or has a bad value; the message names the field and the value."""

    def __init__(self, problems: list[str] | str) -> None:
        # a problem line may quote a value: never a secret's
        self.problems = [redact(p) for p in ([problems] if isinstance(problems, str) else problems)]
        super().__init__("; ".join(self.problems))


class VersionError(UsageError, ValueError):
    """A string is not a GitLab version."""


class PluginNotFound(UsageError):
    """No installed plugin registers the name asked for."""


class PreflightError(UsageError):
    """The upgrade may not start: the reason names what to change."""


class TargetBusy(ZduError):
    """Another upgrade of the same Target is in progress."""


class PlatformError(ZduError):
    """The platform failed to do what was asked (start, stop, reload, ...)."""


class ReadinessTimeout(PlatformError):
    """New instances did not become ready within the deadline."""


class GateFailed(ZduError):
    """A probe gate (or a platform health check) failed: the upgrade must stop or roll back."""


class JournalError(ZduError):
    """The journal cannot be read or written; the message names the file.

    Its disk is full or read-only, or its file is no journal or has a damaged row.

    The upgrade stops acting: without the journal it can record neither intent nor progress. It is
    left as it was last recorded, and resumes (or rolls back) once the journal can be written again.
    """


class RollbackRefused(ZduError):
    """Rollback is no longer possible (post-deployment migrations have started)."""


class UpgradeInterrupted(ZduError):
    """The upgrade was interrupted (Ctrl-C, SIGTERM) and rolled back or left resumable."""
