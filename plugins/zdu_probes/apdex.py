"""The ``apdex`` probe: GitLab's Apdex and 5xx error ratio, from Prometheus histograms or from traffic.

GitLab judges a service on two service-level indicators: an **Apdex** score (a request is
*satisfied* when it takes at most T, *tolerating* when it takes at most 4T, *frustrated* otherwise
or when it failed; Apdex = (satisfied + tolerating / 2) / requests) and an **error ratio** (5xx
answers / requests). The defaults are GitLab.com-like: T = 1 s (Rails requests), the tolerated
threshold 4T, Apdex at least 0.995 and a 5xx error ratio under 0.5 %.

Two sources:

* ``prometheus``: the application's own request metrics, as GitLab exports them: a histogram
  (``http_request_duration_seconds``: ``_bucket{le}``, ``_count``) and a request counter with a
  ``status`` label (``http_requests_total``). Apdex over a ``window`` is
  ``(rate(bucket{le=T}) + rate(bucket{le=4T})) / 2 / rate(count)``. The queries and their values go
  to the journal as the ``prometheus`` probe's do, with the same ``no_data`` policy.
* ``traffic``: the ``http`` probe's own traffic (its options in ``traffic``): every request it sent
  since the previous gate, failed ones frustrated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from zdu.plugins import Measurement, ProbeContext, Secret, Verdict
from zdu_probes.prometheus import (
    NO_DATA_POLICIES,
    Evaluation,
    PrometheusClient,
    QueryCheck,
    QueryError,
    evaluate,
    measurement_of,
    render,
    verdict_of,
)

__all__ = [
    "ApdexProbe",
    "ApdexProbeConfig",
    "apdex_queries",
    "apdex_score",
    "le_matcher",
    "traffic_figures",
]

SOURCES = ("prometheus", "traffic")


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number greater than 0 (got {value!r})")


def _ratio(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be a ratio between 0 and 1 (got {value!r})")


def _window(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    import re  # noqa: PLC0415 - only for validation

    if not isinstance(value, str) or not re.fullmatch(r"\d+(ms|s|m|h)", value):
        raise ValueError(f"{attribute.name} must be a PromQL duration such as '30s' or '5m' (got {value!r})")


@attrs.frozen
class ApdexProbeConfig:
    """Configuration of the ``apdex`` probe (``[[probes]]`` with ``name = "apdex"``).

    :ivar source: ``prometheus`` (histograms) or ``traffic`` (the http probe's requests).
    :ivar satisfied_s: T, in seconds: a request this fast satisfies (GitLab's Rails: 1 s).
    :ivar tolerated_s: a request this fast is tolerated; unset for 4T.
    :ivar min_apdex: the lowest Apdex score that passes.
    :ivar max_error_ratio: the highest 5xx ratio that passes (0.005 is 0.5 %).
    :ivar url: the Prometheus server (source ``prometheus``).
    :ivar histogram: the request duration histogram's name.
    :ivar requests_metric: the request counter with a ``status`` label.
    :ivar selector: label matchers added to every query (``version="$release"``); may be empty.
    :ivar window: the range of the rates (``30s``).
    :ivar no_data: ``fail``, ``inconclusive`` or ``pass`` when a query has no data.
    :ivar timeout: seconds one query may take.
    :ivar bearer_token: for Prometheus, a secret.
    :ivar traffic: options of the http probe that sends the traffic (source ``traffic``).
    :ivar min_requests: fewer requests than this in a measurement (source ``traffic``) is inconclusive.
    """

    source: str = attrs.field(default="prometheus", validator=attrs.validators.in_(SOURCES))
    satisfied_s: float = attrs.field(default=1.0, validator=_positive)
    tolerated_s: float | None = None
    min_apdex: float = attrs.field(default=0.995, validator=_ratio)
    max_error_ratio: float = attrs.field(default=0.005, validator=_ratio)
    url: str = ""
    histogram: str = "http_request_duration_seconds"
    requests_metric: str = "http_requests_total"
    selector: str = ""
    window: str = attrs.field(default="30s", validator=_window)
    no_data: str = attrs.field(default="inconclusive", validator=attrs.validators.in_(NO_DATA_POLICIES))
    timeout: float = attrs.field(default=5.0, validator=_positive)
    bearer_token: Secret | None = None
    traffic: dict[str, Any] = attrs.field(factory=dict)
    min_requests: int = 1

    def __attrs_post_init__(self) -> None:
        if self.source == "prometheus" and not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"url must be the Prometheus server's http(s) URL for source 'prometheus' (got {self.url!r})"
            )
        if self.tolerated_s is not None and self.tolerated_s < self.satisfied_s:
            raise ValueError(
                f"tolerated_s must be at least satisfied_s ({self.satisfied_s:g}; got {self.tolerated_s!r})"
            )

    @property
    def tolerated(self) -> float:
        """The tolerated threshold: ``tolerated_s``, else 4T."""
        return self.tolerated_s if self.tolerated_s is not None else 4 * self.satisfied_s


def apdex_score(
    latencies_s: Iterable[float], satisfied_s: float, tolerated_s: float, failed: int = 0
) -> float | None:
    """Apdex of ``latencies_s`` (successful requests) plus ``failed`` ones; ``None`` without requests."""
    satisfied = tolerating = total = 0
    for latency in latencies_s:
        total += 1
        if latency <= satisfied_s:
            satisfied += 1
        elif latency <= tolerated_s:
            tolerating += 1
    total += failed
    return (satisfied + tolerating / 2) / total if total else None


def le_matcher(seconds: float) -> str:
    """A ``le`` matcher for a bucket bound, whichever way the exporter printed it (``1`` or ``1.0``)."""
    text = f"{seconds:g}"
    forms = {text, repr(float(seconds))}
    escaped = sorted(form.replace(".", "\\\\.") for form in forms)
    return f'le=~"{"|".join(escaped)}"'


def apdex_queries(config: ApdexProbeConfig) -> tuple[QueryCheck, QueryCheck]:
    """The Apdex and error-ratio checks for source ``prometheus``."""
    extra = f",{config.selector}" if config.selector.strip() else ""
    window = config.window
    bucket, count = f"{config.histogram}_bucket", f"{config.histogram}_count"
    apdex = (
        f"(sum(rate({bucket}{{{le_matcher(config.satisfied_s)}{extra}}}[{window}])) + "
        f"sum(rate({bucket}{{{le_matcher(config.tolerated)}{extra}}}[{window}]))) / 2 / "
        f"sum(rate({count}{{{extra.lstrip(',')}}}[{window}]))"
    )
    # no 5xx series at all means no errors ("or vector(0)"); no requests at all still means no data
    errors = (
        f'(sum(rate({config.requests_metric}{{status=~"5.."{extra}}}[{window}])) or vector(0)) / '
        f"sum(rate({config.requests_metric}{{{extra.lstrip(',')}}}[{window}]))"
    )
    return (
        QueryCheck(name="apdex", query=apdex, min=config.min_apdex, no_data=config.no_data),
        QueryCheck(name="error_ratio", query=errors, max=config.max_error_ratio, no_data=config.no_data),
    )


class _Record(Protocol):
    @property
    def latency_s(self) -> float: ...

    @property
    def failed(self) -> bool: ...


def traffic_figures(records: Sequence[_Record], config: ApdexProbeConfig) -> dict[str, float | None]:
    """Apdex, error ratio and request count of the http probe's records."""
    ok = [r.latency_s for r in records if not r.failed]
    failed = len(records) - len(ok)
    return {
        "apdex": apdex_score(ok, config.satisfied_s, config.tolerated, failed),
        "error_ratio": failed / len(records) if records else None,
        "requests": float(len(records)),
    }


class ApdexProbe:
    """Judges Apdex and the 5xx error ratio at every gate; see the module's documentation."""

    def __init__(self, config: ApdexProbeConfig, *, name: str = "apdex") -> None:
        self._config = config
        self._name = name
        self._checks = apdex_queries(config)
        self._client = PrometheusClient(config.url, config.timeout, config.bearer_token)
        self._ctx: ProbeContext | None = None
        self._traffic: Any = None
        self._seen = 0
        self._requests = 0
        self._since = 0.0
        self._measurements: list[Measurement] = []
        self._verdict: Verdict | None = None
        if config.source == "traffic":
            from zdu_probes.http import HttpProbe, HttpProbeConfig  # noqa: PLC0415

            try:
                self._traffic = HttpProbe(HttpProbeConfig(**config.traffic), name=f"{name}-traffic")
            except (TypeError, ValueError) as error:
                raise ValueError(f"traffic: {error}") from None

    @property
    def name(self) -> str:
        """``apdex``."""
        return self._name

    def start(self, ctx: ProbeContext) -> None:
        """Start the traffic (source ``traffic``); Prometheus is asked at the gates."""
        self._ctx = ctx
        self._since = time.time()
        if self._traffic is not None:
            self._traffic.start(ctx)

    def _evaluations(self) -> list[Evaluation]:
        if self._traffic is None:
            evaluations = []
            for check in self._checks:
                query = render(check.query, self._ctx)
                try:
                    evaluations.append(evaluate(check, query, self._client.query(query)))
                except QueryError as error:
                    evaluations.append(evaluate(check, query, None, str(error)))
            return evaluations
        records = self._traffic.records()
        window, self._seen = records[self._seen :], len(records)
        self._requests = len(window)
        figures = traffic_figures(window, self._config)
        described = f"{len(window)} requests of the http probe's traffic"
        if len(window) < self._config.min_requests:
            return [
                Evaluation(
                    c.name,
                    described,
                    figures[c.name],
                    c.threshold,
                    "inconclusive",
                    f"{len(window)} requests, fewer than min_requests {self._config.min_requests}",
                )
                for c in self._checks
            ]
        return [
            evaluate(check, described, [] if figures[check.name] is None else [_finite(figures[check.name])])
            for check in self._checks
        ]

    def measure(self) -> Measurement:
        """Judge Apdex and the error ratio since the previous gate."""
        started, self._since = self._since, time.time()
        measurement = measurement_of(self._name, self._evaluations(), started, time.time())
        if self._traffic is not None:  # what the figures are worth: how many requests they are of
            measurement = attrs.evolve(
                measurement, values={**measurement.values, "judged_requests": self._requests}
            )
        self._measurements.append(measurement)
        return measurement

    def stop(self) -> Verdict:
        """Stop the traffic and judge the run from every measurement."""
        if self._verdict is None:
            if self._traffic is not None:
                self._traffic.stop()
            self._verdict = verdict_of(self._name, self._measurements)
        return self._verdict


def _finite(value: float | None) -> float:
    assert value is not None
    return value if math.isfinite(value) else 0.0


def describe_defaults() -> Mapping[str, float]:
    """The GitLab.com-like defaults, for documentation and reports."""
    config = ApdexProbeConfig(url="http://127.0.0.1:9090")
    return {
        "satisfied_s": config.satisfied_s,
        "tolerated_s": config.tolerated,
        "min_apdex": config.min_apdex,
        "max_error_ratio": config.max_error_ratio,
    }
