"""Value types shared by the core and every plugin.

All of them are frozen attrs classes: change one with :func:`attrs.evolve`, never in place.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from zdu.errors import VersionError

__all__ = [
    "Event",
    "Measurement",
    "MeasurementStatus",
    "Phase",
    "Release",
    "Report",
    "Target",
    "Verdict",
    "VerdictStatus",
    "Version",
]


_VERSION = re.compile(
    r"""
    ^v?
    (?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.
    (?:
        # an auto-deploy package: MAJOR.MINOR.TIMESTAMP-RAILS_SHA.OMNIBUS_SHA
        (?P<timestamp>\d{12})-(?P<rails>[0-9a-f]{7,40})\.(?P<omnibus>[0-9a-f]{7,40})
      |
        (?P<patch>0|[1-9]\d*)
        (?:-rc(?P<rc>[1-9]\d*))?
        (?:-(?P<edition>ee|ce))?
        (?:\.(?P<build>\d+))?
    )$
    """,
    re.VERBOSE,
)


def _shown(value: object) -> str:
    """``repr(value)``, cut short: an error names a bad value without repeating a whole file."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"


@attrs.frozen(order=False)
class Version:
    """A GitLab version.

    The grammar covers what GitLab publishes:

    * releases: ``16.5.1``, with an optional edition and package build: ``16.5.1-ee``, ``16.5.1-ee.0``;
    * release candidates: ``16.6.0-rc42`` (``-ee`` may follow);
    * auto-deploy packages: ``16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a``, that is
      ``MAJOR.MINOR.TIMESTAMP-RAILS_SHA.OMNIBUS_SHA``.

    Versions order by ``(major, minor, patch)`` and, within one ``MAJOR.MINOR.0``, auto-deploy packages
    (by timestamp) come before release candidates (by number), which come before the release. Edition
    and package build take part neither in the order nor in equality (``16.6.0-ee == 16.6.0``).

    >>> Version.parse("16.6.0-rc42") < Version.parse("16.6.0")
    True
    """

    major: int
    minor: int
    patch: int = 0
    rc: int | None = None
    edition: str | None = attrs.field(default=None, eq=False)
    build: int | None = attrs.field(default=None, eq=False)
    auto_deploy_timestamp: str | None = None
    auto_deploy_shas: tuple[str, str] | None = None

    text: str = attrs.field(default="", eq=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text``; raise :class:`~zdu.errors.VersionError` naming it when it is no GitLab version."""
        if not isinstance(text, str):
            raise VersionError(f"not a GitLab version: {_shown(text)} (expected a string such as '16.6.0')")
        match = _VERSION.match(text.strip())
        if match is None:
            raise VersionError(
                f"not a GitLab version: {_shown(text)} (expected MAJOR.MINOR.PATCH such as '16.6.0', "
                "a release candidate such as '16.6.0-rc42', or an auto-deploy package such as "
                "'16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a')"
            )
        groups = match.groupdict()
        try:
            return cls._from_groups(groups, text.strip())
        except ValueError:  # a number too long for int()
            raise VersionError(f"not a GitLab version: {_shown(text)} (a number in it is too long)") from None

    @classmethod
    def _from_groups(cls, groups: dict[str, Any], text: str) -> Version:
        if groups["timestamp"] is not None:
            return cls(
                major=int(groups["major"]),
                minor=int(groups["minor"]),
                patch=0,
                auto_deploy_timestamp=groups["timestamp"],
                auto_deploy_shas=(groups["rails"], groups["omnibus"]),
                text=text,
            )
        return cls(
            major=int(groups["major"]),
            minor=int(groups["minor"]),
            patch=int(groups["patch"]),
            rc=int(groups["rc"]) if groups["rc"] else None,
            edition=groups["edition"],
            build=int(groups["build"]) if groups["build"] else None,
            text=text,
        )

    @property
    def is_auto_deploy(self) -> bool:
        """Whether this is an auto-deploy package version."""
        return self.auto_deploy_timestamp is not None

    @property
    def is_prerelease(self) -> bool:
        """Whether this is a release candidate or an auto-deploy package."""
        return self.rc is not None or self.is_auto_deploy

    @property
    def minor_series(self) -> tuple[int, int]:
        """``(major, minor)``."""
        return (self.major, self.minor)

    def _key(self) -> tuple[int, int, int, int, int | str, tuple[str, str] | tuple[()]]:
        if self.auto_deploy_timestamp is not None:
            return (
                self.major,
                self.minor,
                self.patch,
                0,
                self.auto_deploy_timestamp,
                self.auto_deploy_shas or (),
            )
        if self.rc is not None:
            return (self.major, self.minor, self.patch, 1, self.rc, ())
        return (self.major, self.minor, self.patch, 2, 0, ())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.auto_deploy_timestamp is not None and self.auto_deploy_shas is not None:
            rails, omnibus = self.auto_deploy_shas
            return f"{self.major}.{self.minor}.{self.auto_deploy_timestamp}-{rails}.{omnibus}"
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.rc is not None:
            text += f"-rc{self.rc}"
        if self.edition is not None:
            text += f"-{self.edition}"
        if self.build is not None:
            text += f".{self.build}"
        return text


def _to_version(value: Version | str) -> Version:
    return value if isinstance(value, Version) else Version.parse(value)


@attrs.frozen
class Release:
    """The version an upgrade is to reach."""

    version: Version = attrs.field(converter=_to_version)


_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


def _valid_name(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid {attribute.name} (lowercase letters, digits, '.', '_', '-'; "
            "at most 63 characters, starting and ending with a letter or digit)"
        )


@attrs.frozen
class Target:
    """One deployment to upgrade: a Dedicated tenant, a Cell, a local fleet."""

    name: str = attrs.field(validator=_valid_name)
    platform: str
    version: Version = attrs.field(converter=_to_version)


class Phase(enum.Enum):
    """The phases of an upgrade, in the order the orchestrator runs them."""

    PREFLIGHT = "preflight"
    MIGRATE_PRE = "migrate(pre)"
    PREPARE = "prepare"
    ROLLOUT = "rollout"
    VERIFY = "verify"
    FINALIZE = "finalize"
    MIGRATE_POST = "migrate(post)"
    CLEANUP = "cleanup"
    ROLLBACK = "rollback"

    ORDER: ClassVar[tuple[Phase, ...]]

    @property
    def rollback_possible(self) -> bool:
        """Whether a failure in this phase can still be rolled back (before the point of no return)."""
        return self in _ROLLBACK_POSSIBLE

    def __str__(self) -> str:
        return str(self.value)


Phase.ORDER = (
    Phase.PREFLIGHT,
    Phase.MIGRATE_PRE,
    Phase.PREPARE,
    Phase.ROLLOUT,
    Phase.VERIFY,
    Phase.FINALIZE,
    Phase.MIGRATE_POST,
    Phase.CLEANUP,
)
_ROLLBACK_POSSIBLE = frozenset(Phase.ORDER[: Phase.ORDER.index(Phase.MIGRATE_POST)])


@attrs.frozen
class Event:
    """Something that happened during an upgrade, as the journal records it."""

    upgrade_id: str
    at: float
    phase: str
    kind: str
    message: str
    data: Mapping[str, Any] = attrs.field(factory=dict)


class MeasurementStatus(enum.Enum):
    """The outcome of one probe measurement, as in Argo Rollouts' analysis runs."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@attrs.frozen
class Measurement:
    """What a probe saw over one interval, and how it judges it against its thresholds."""

    probe: str
    status: MeasurementStatus
    values: Mapping[str, float] = attrs.field(factory=dict)
    reasons: tuple[str, ...] = ()
    started_at: float = 0.0
    finished_at: float = 0.0
    #: each check behind the status, for the journal and reports: what was asked (a query, a
    #: command), the value seen, the threshold and the decision (JSON-ready mappings)
    evaluations: tuple[Mapping[str, Any], ...] = ()


class VerdictStatus(enum.Enum):
    """The outcome of a probe over the whole upgrade."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@attrs.frozen
class Verdict:
    """A probe's judgement over the whole upgrade, with the figures it is based on."""

    probe: str
    status: VerdictStatus
    values: Mapping[str, float] = attrs.field(factory=dict)
    reasons: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Whether the verdict lets the upgrade count as good (a dry-run probe never blocks)."""
        return self.dry_run or self.status is VerdictStatus.PASSED


class UpgradeStatus(enum.Enum):
    """Where an upgrade ended (or stands, while it runs)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"

    @property
    def in_progress(self) -> bool:
        """Whether an upgrade in this status still holds its Target."""
        return self in (UpgradeStatus.RUNNING, UpgradeStatus.PAUSED, UpgradeStatus.INTERRUPTED)


@attrs.frozen
class Report:
    """The outcome of one upgrade: what happened, and what the probes measured."""

    upgrade_id: str
    target: str
    from_version: str
    to_version: str
    strategy: str
    layers: tuple[str, ...]
    status: UpgradeStatus
    started_at: float
    finished_at: float
    phases: tuple[tuple[str, float], ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    error: str | None = None
    #: the target already served the release: nothing was done, nothing recorded (no upgrade id)
    nothing_to_do: bool = False

    @property
    def ok(self) -> bool:
        """Whether the upgrade reached the release and every gating probe passed."""
        return self.status is UpgradeStatus.SUCCEEDED and all(v.ok for v in self.verdicts)

    @property
    def duration_seconds(self) -> float:
        """Wall-clock length of the upgrade."""
        return self.finished_at - self.started_at

    def value(self, name: str, default: float = 0.0) -> float:
        """The first probe figure called ``name`` (``requests``, ``failed_requests``, ...)."""
        for verdict in self.verdicts:
            if name in verdict.values:
                return verdict.values[name]
        return default

    @property
    def downtime_seconds(self) -> float:
        """The longest window in which probe traffic saw only failures."""
        return self.value("longest_outage_s")

    @property
    def failed_requests(self) -> int:
        """Requests that failed (connection errors and 5xx), by the probes that count them."""
        return int(self.value("failed_requests"))

    def summary(self) -> str:
        """One paragraph for a person: outcome, versions and the main figures."""
        if self.nothing_to_do:
            return (
                f"{self.target} already serves {self.to_version}: nothing to upgrade "
                "(nothing was changed or recorded)"
            )
        lines = [
            f"upgrade {self.upgrade_id} of {self.target} {self.from_version} -> {self.to_version} "
            f"({self.strategy}{' + ' + ' + '.join(self.layers) if self.layers else ''}): "
            f"{self.status.value} in {self.duration_seconds:.1f}s"
        ]
        if self.error:
            lines.append(f"  reason: {self.error}")
        for verdict in self.verdicts:
            figures = ", ".join(f"{k}={_fmt(v)}" for k, v in verdict.values.items())
            dry = " (dry run)" if verdict.dry_run else ""
            lines.append(f"  probe {verdict.probe}: {verdict.status.value}{dry}; {figures}")
            lines.extend(f"    - {reason}" for reason in verdict.reasons)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "upgrade_id": self.upgrade_id,
            "target": self.target,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "strategy": self.strategy,
            "layers": list(self.layers),
            "status": self.status.value,
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_seconds, 3),
            "phases": [{"phase": p, "duration_s": round(d, 3)} for p, d in self.phases],
            "verdicts": [
                {
                    "probe": v.probe,
                    "status": v.status.value,
                    "dry_run": v.dry_run,
                    "values": dict(v.values),
                    "reasons": list(v.reasons),
                }
                for v in self.verdicts
            ],
            "error": self.error,
            "nothing_to_do": self.nothing_to_do,
        }


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
