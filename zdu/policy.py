"""The version policy preflight enforces: which upgrades may run without downtime.

GitLab's rules for zero-downtime upgrades:

* one minor version at a time (16.5 → 16.6, and 16.11 → 17.0 across a major): regular and
  post-deployment migrations are written for the step from the previous minor only, and skipping a
  minor while post-deployment migrations are split has broken schemas and lost data;
* required upgrade stops (X.2, X.5, X.8, X.11) can never be passed over;
* patch releases, release candidates and auto-deploy packages of the same or the next minor are
  fine;
* never backwards: a rollback is the rollback of an upgrade, not an upgrade to an older version.
"""

from __future__ import annotations

from zdu.errors import PreflightError
from zdu.model import Version

__all__ = ["LAST_MINOR", "REQUIRED_STOP_MINORS", "check_upgrade_path", "next_minor"]

#: The last minor version of a major release (16.11 is followed by 17.0).
LAST_MINOR = 11

#: Minor versions that are required upgrade stops.
REQUIRED_STOP_MINORS = frozenset({2, 5, 8, 11})


def next_minor(version: Version) -> tuple[int, int]:
    """The ``(major, minor)`` that follows ``version``'s minor series."""
    if version.minor >= LAST_MINOR:
        return (version.major + 1, 0)
    return (version.major, version.minor + 1)


def _skipped(current: tuple[int, int], target: tuple[int, int]) -> list[tuple[int, int]]:
    """The minor series strictly between ``current`` and ``target``."""
    skipped: list[tuple[int, int]] = []
    series = current
    while True:
        series = (series[0] + 1, 0) if series[1] >= LAST_MINOR else (series[0], series[1] + 1)
        if series >= target:
            return skipped
        skipped.append(series)


def check_upgrade_path(current: Version, release: Version) -> None:
    """Raise :class:`~zdu.errors.PreflightError` unless ``current`` → ``release`` may run without downtime."""
    if release <= current:
        raise PreflightError(
            f"release.version {release} is not newer than the running version {current}: zdu upgrades "
            "forward only (to undo an upgrade, 'zdu rollback ID' it while rollback is possible)"
        )
    if release.minor_series in (current.minor_series, next_minor(current)):
        return
    skipped = _skipped(current.minor_series, release.minor_series)
    names = ", ".join(f"{major}.{minor}" for major, minor in skipped)
    stops = [f"{major}.{minor}" for major, minor in skipped if minor in REQUIRED_STOP_MINORS]
    step = "{}.{}".format(*next_minor(current))
    if not skipped:  # a minor past the last of its major (16.12 after 16.11): no such series
        raise PreflightError(
            f"release.version {release} does not follow {current}: after "
            f"{current.major}.{current.minor} comes {step} (a major release has {LAST_MINOR} minors at most)"
        )
    message = (
        f"release.version {release} skips {names} from {current}: zero-downtime upgrades go one minor "
        f"version at a time; upgrade to {step} first"
    )
    if stops:
        verb = "is a required upgrade stop" if len(stops) == 1 else "are required upgrade stops"
        message += f" ({', '.join(stops)} {verb})"
    raise PreflightError(message)
