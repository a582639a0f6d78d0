"""The ``prometheus`` probe: PromQL queries with thresholds, judged at every gate.

Argo Rollouts' and Flagger's analyses judge a rollout on metrics a Prometheus already collects; this
probe does the same. Each configured query is evaluated at every gate (an instant query through
Prometheus' HTTP API), and its value compared with ``max`` and/or ``min``. Every evaluation is kept
in the measurement's :attr:`~zdu.model.Measurement.evaluations` (query, value, threshold, decision),
so the journal says why a gate passed or failed.

A query that returns no data (an empty vector, or NaN, as ``0/0`` gives when nothing was served)
follows its ``no_data`` policy: ``fail``, ``inconclusive`` (the default) or ``pass``. A pass on no
data is never silent: the evaluation records ``no data`` and the policy that let it pass. A query
that Prometheus rejects, or a Prometheus that does not answer, makes the measurement inconclusive
with the error as its reason (Argo's "error" outcome).

Queries may name the upgrade: ``$release``, ``$from_version`` and ``$target`` are substituted
(``string.Template``: PromQL's braces stay as they are).
"""

from __future__ import annotations

import json
import math
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import attrs

from zdu.plugins import Measurement, MeasurementStatus, ProbeContext, Secret, Verdict, VerdictStatus

__all__ = [
    "NO_DATA_POLICIES",
    "Evaluation",
    "PrometheusClient",
    "PrometheusProbe",
    "PrometheusProbeConfig",
    "QueryCheck",
    "QueryError",
    "evaluate",
    "measurement_of",
]

#: What a query without data counts as.
NO_DATA_POLICIES = ("fail", "inconclusive", "pass")

_CHECK_NAME = r"[a-z][a-z0-9_]{0,62}"


def _check_name(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    import re  # noqa: PLC0415 - only for validation

    if not isinstance(value, str) or not re.fullmatch(_CHECK_NAME, value):
        raise ValueError(
            f"{attribute.name} must be a lowercase identifier such as 'error_ratio' (got {value!r})"
        )


def _non_empty(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string (got {value!r})")


def _http_url(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    parsed = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(
            f"{attribute.name} must be an http(s) URL such as 'http://127.0.0.1:9090' (got {value!r})"
        )


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number greater than 0 (got {value!r})")


def _optional_number(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
    ):
        raise ValueError(f"{attribute.name} must be a number, or unset (got {value!r})")


@attrs.frozen
class QueryCheck:
    """One PromQL query and its thresholds (a ``[[probes.queries]]`` table).

    :ivar name: what the check is called in figures and reports (``error_ratio``).
    :ivar query: the PromQL expression; ``$release``, ``$from_version``, ``$target`` are substituted.
    :ivar max: the value must be at most this; unset for no upper bound.
    :ivar min: the value must be at least this; unset for no lower bound.
    :ivar no_data: what an empty result (or NaN) counts as: ``fail``, ``inconclusive`` or ``pass``.
    """

    name: str = attrs.field(validator=_check_name)
    query: str = attrs.field(validator=_non_empty)
    max: float | None = attrs.field(default=None, validator=_optional_number)
    min: float | None = attrs.field(default=None, validator=_optional_number)
    no_data: str = attrs.field(default="inconclusive", validator=attrs.validators.in_(NO_DATA_POLICIES))

    def __attrs_post_init__(self) -> None:
        if self.max is None and self.min is None:
            raise ValueError(f"query {self.name!r}: give a threshold, max or min (or both)")

    @property
    def threshold(self) -> str:
        """The thresholds as a person reads them (``<= 0.005``)."""
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts)


def _to_checks(value: Sequence[Any]) -> tuple[QueryCheck, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("queries must be a non-empty list of tables ([[probes.queries]])")
    checks: list[QueryCheck] = []
    for index, item in enumerate(value):
        if isinstance(item, QueryCheck):
            checks.append(item)
            continue
        if not isinstance(item, dict):
            raise ValueError(f"queries[{index}] must be a table (got {item!r})")
        known = {f.name for f in attrs.fields(QueryCheck)}
        unknown = sorted(set(item) - known)
        if unknown:
            raise ValueError(
                f"queries[{index}]: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        try:
            checks.append(QueryCheck(**item))
        except TypeError as error:
            raise ValueError(f"queries[{index}]: {error}") from None
        except ValueError as error:
            raise ValueError(f"queries[{index}].{error}") from None
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise ValueError(f"queries: a name is used twice in {names!r}")
    return tuple(checks)


@attrs.frozen
class PrometheusProbeConfig:
    """Configuration of the ``prometheus`` probe (``[[probes]]`` with ``name = "prometheus"``).

    :ivar url: the Prometheus server (``http://127.0.0.1:9090``).
    :ivar queries: the checks, each a table with ``name``, ``query``, ``max``/``min``, ``no_data``.
    :ivar timeout: seconds one query may take before the measurement is inconclusive.
    :ivar bearer_token: sent as ``Authorization: Bearer``; a secret, never logged or reported.
    """

    url: str = attrs.field(validator=_http_url)
    queries: tuple[QueryCheck, ...] = attrs.field(converter=_to_checks)
    timeout: float = attrs.field(default=5.0, validator=_positive)
    bearer_token: Secret | None = None


class QueryError(Exception):
    """Prometheus did not answer a query, or rejected it."""


@attrs.frozen
class PrometheusClient:
    """Instant queries through Prometheus' HTTP API (``/api/v1/query``), standard library only."""

    url: str
    timeout: float = 5.0
    bearer_token: Secret | None = None

    def query(self, expression: str) -> list[float]:
        """The values of an instant query: one per series (a scalar gives one); NaN left out."""
        address = f"{self.url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        request = urllib.request.Request(address)  # noqa: S310 - the scheme is checked in the config
        if self.bearer_token is not None:
            request.add_header("Authorization", f"Bearer {self.bearer_token.reveal()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            detail = _error_text(error)
            raise QueryError(f"Prometheus answered {error.code}: {detail}") from None
        except (OSError, ValueError) as error:
            raise QueryError(f"Prometheus at {self.url} did not answer: {error}") from None
        if body.get("status") != "success":
            raise QueryError(f"Prometheus: {body.get('errorType', 'error')}: {body.get('error', body)}")
        data = body.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            values = [float(result[1])]
        elif kind == "vector":
            values = [float(sample["value"][1]) for sample in result]
        else:
            raise QueryError(f"query {expression!r} gives a {kind}, not an instant vector or scalar")
        return [v for v in values if not math.isnan(v)]


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
        return str(body.get("error") or body)
    except ValueError:
        return str(error.reason)


@attrs.frozen
class Evaluation:
    """One check evaluated once: what was asked, what came back, and the decision."""

    check: str
    query: str
    value: float | None
    threshold: str
    decision: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form the journal keeps."""
        return attrs.asdict(self)


def evaluate(check: QueryCheck, query: str, values: Sequence[float] | None, error: str = "") -> Evaluation:
    """Judge one check's result: ``values`` (``None`` when the query failed with ``error``)."""
    if values is None:
        return Evaluation(check.name, query, None, check.threshold, "inconclusive", f"query failed: {error}")
    if not values:
        decision = {"fail": "failed", "inconclusive": "inconclusive", "pass": "passed"}[check.no_data]
        return Evaluation(
            check.name, query, None, check.threshold, decision, f"no data (no_data = {check.no_data!r})"
        )
    worst = max(values) if check.max is not None else min(values)
    broken = []
    for value in values:
        if check.max is not None and value > check.max:
            broken.append(f"{value:g} > {check.max:g}")
            worst = max(worst, value)
        if check.min is not None and value < check.min:
            broken.append(f"{value:g} < {check.min:g}")
            worst = value if check.max is None else worst
    if broken:
        return Evaluation(check.name, query, worst, check.threshold, "failed", "; ".join(broken))
    return Evaluation(check.name, query, worst, check.threshold, "passed")


def measurement_of(
    probe: str, evaluations: Sequence[Evaluation], started_at: float, finished_at: float
) -> Measurement:
    """A measurement of evaluations: failed if one failed, else inconclusive if one was, else passed."""
    decisions = {e.decision for e in evaluations}
    status = (
        MeasurementStatus.FAILED
        if "failed" in decisions
        else MeasurementStatus.INCONCLUSIVE
        if "inconclusive" in decisions
        else MeasurementStatus.SUCCESSFUL
    )
    reasons = tuple(
        f"{e.check}: {e.reason} (threshold {e.threshold})"
        for e in evaluations
        if e.decision != "passed" or e.reason
    )
    return Measurement(
        probe=probe,
        status=status,
        values={e.check: e.value for e in evaluations if e.value is not None},
        reasons=reasons,
        started_at=started_at,
        finished_at=finished_at,
        evaluations=tuple(e.to_dict() for e in evaluations),
    )


def verdict_of(probe: str, measurements: Sequence[Measurement]) -> Verdict:
    """The whole run: failed when a measurement failed, inconclusive when one was (or none ran)."""
    failed = sum(m.status is MeasurementStatus.FAILED for m in measurements)
    inconclusive = sum(m.status is MeasurementStatus.INCONCLUSIVE for m in measurements)
    values: dict[str, float] = {
        "evaluations": len(measurements),
        "failed_evaluations": failed,
        "inconclusive_evaluations": inconclusive,
    }
    if measurements:
        values.update(measurements[-1].values)
    reasons = tuple(
        dict.fromkeys(
            r for m in measurements for r in m.reasons if m.status is not MeasurementStatus.SUCCESSFUL
        )
    )
    if failed:
        status = VerdictStatus.FAILED
    elif inconclusive or not measurements:
        status = VerdictStatus.INCONCLUSIVE
        reasons = reasons or ("no evaluation ran",)
    else:
        status = VerdictStatus.PASSED
    return Verdict(probe=probe, status=status, values=values, reasons=reasons)


def render(query: str, ctx: ProbeContext | None) -> str:
    """``query`` with ``$release``, ``$from_version`` and ``$target`` substituted."""
    if ctx is None:
        return query
    return string.Template(query).safe_substitute(
        release=str(ctx.release.version), from_version=str(ctx.from_version), target=ctx.target.name
    )


class PrometheusProbe:
    """Evaluates PromQL checks at every gate; see the module's documentation."""

    def __init__(self, config: PrometheusProbeConfig, *, name: str = "prometheus") -> None:
        self._config = config
        self._name = name
        self._client = PrometheusClient(config.url, config.timeout, config.bearer_token)
        self._ctx: ProbeContext | None = None
        self._since = 0.0
        self._measurements: list[Measurement] = []
        self._verdict: Verdict | None = None

    @property
    def name(self) -> str:
        """``prometheus``."""
        return self._name

    @property
    def config(self) -> PrometheusProbeConfig:
        """The probe's configuration."""
        return self._config

    def start(self, ctx: ProbeContext) -> None:
        """Remember the upgrade (for ``$release`` and friends); queries run at the gates."""
        self._ctx = ctx
        self._since = time.time()

    def evaluate(self) -> list[Evaluation]:
        """Run every check once, now."""
        evaluations = []
        for check in self._config.queries:
            query = render(check.query, self._ctx)
            try:
                evaluations.append(evaluate(check, query, self._client.query(query)))
            except QueryError as error:
                evaluations.append(evaluate(check, query, None, str(error)))
        return evaluations

    def measure(self) -> Measurement:
        """Evaluate every check (each query waits at most ``timeout``)."""
        started, self._since = self._since, time.time()
        measurement = measurement_of(self._name, self.evaluate(), started, time.time())
        self._measurements.append(measurement)
        return measurement

    def stop(self) -> Verdict:
        """Judge the run from every measurement taken; a second call repeats the first verdict."""
        if self._verdict is None:
            self._verdict = verdict_of(self._name, self._measurements)
        return self._verdict
