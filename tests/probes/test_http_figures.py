"""The http probe's figures and configuration: pure functions, checked without a network."""

from __future__ import annotations

import math
import re

import attrs
import pytest

from zdu.config import structure, unstructure
from zdu.errors import ConfigError
from zdu_probes.config import HttpProbeConfig
from zdu_probes.figures import (
    ErrorKind,
    RequestKind,
    RequestRecord,
    WriteCheck,
    failure_rate_upper_95,
    longest_outage,
    lost_write_keys,
    outcome,
    summarize,
)


def rec(
    kind: RequestKind,
    started: float,
    finished: float | None = None,
    error: ErrorKind | None = None,
    *,
    status: int | None = 200,
    key: str | None = None,
    scheduled: bool = False,
    reconnect: bool = False,
) -> RequestRecord:
    return RequestRecord(
        kind=kind,
        path="/",
        started=started,
        finished=started + 0.01 if finished is None else finished,
        status=status,
        error=error,
        key=key,
        scheduled=scheduled,
        reconnect=reconnect,
    )


# --- outage ------------------------------------------------------------------------------------


def test_outage_is_per_kind_and_not_ended_by_a_success_of_another_kind() -> None:
    # writes fail from 1.0 to 4.0 while pages keep loading: down for writes for 3 s
    records = [rec(RequestKind.WRITE, 1.0 + i * 0.5, 1.1 + i * 0.5, ErrorKind.HTTP_5XX) for i in range(6)]
    records += [rec(RequestKind.PAGE, 1.0 + i * 0.1) for i in range(30)]
    records.append(rec(RequestKind.WRITE, 4.0, 4.05))  # writes answered again at 4.05
    assert longest_outage(records) == pytest.approx(3.05)
    # had every kind been mixed into one sequence, the pages would have hidden it
    merged = [attrs.evolve(r, kind=RequestKind.PAGE) for r in records]
    assert longest_outage(merged) < 0.2


def test_outage_takes_the_longest_kind() -> None:
    records = [
        rec(RequestKind.API, 0.0, 0.5, ErrorKind.TIMEOUT),
        rec(RequestKind.API, 0.7),  # api: 0.0 .. 0.71
        rec(RequestKind.PAGE, 2.0, 2.1, ErrorKind.CONNECTION),
        rec(RequestKind.PAGE, 3.0, 3.2, ErrorKind.CONNECTION),  # pages: 2.0 .. 3.2, nothing after
    ]
    assert longest_outage(records) == pytest.approx(1.2)


def test_an_answer_after_a_stall_ends_the_outage_when_it_arrives() -> None:
    # a stall from 0 to 3 s, timeout 1 s: starts before 2.0 time out, later ones are answered at 3.0
    records = [rec(RequestKind.API, t / 100, t / 100 + 1.0, ErrorKind.TIMEOUT) for t in range(200)]
    records += [rec(RequestKind.API, t / 100, 3.0) for t in range(200, 300)]
    assert longest_outage(records) == pytest.approx(3.0)


def test_websockets_and_lookups_make_no_outage() -> None:
    records = [
        rec(RequestKind.SOCKET, 0.0, 30.0, ErrorKind.DROPPED, status=101),
        rec(RequestKind.LOOKUP, 31.0, 36.0, ErrorKind.TIMEOUT, status=None),
    ]
    assert longest_outage(records) == 0


# --- upper bound -------------------------------------------------------------------------------


@pytest.mark.parametrize("requests", [1, 10, 100, 1000, 100_000])
def test_upper_bound_without_failures_is_the_exact_bound(requests: int) -> None:
    bound = failure_rate_upper_95(0, requests)
    assert bound == pytest.approx(1 - 0.05 ** (1 / requests))
    # at that rate, seeing no failure in N requests has a 5% chance
    assert (1 - bound) ** requests == pytest.approx(0.05)
    if requests >= 100:
        assert bound == pytest.approx(3 / requests, rel=0.02)  # the rule of three


def test_upper_bound_with_failures_is_wilson_and_above_the_observed_rate() -> None:
    assert failure_rate_upper_95(0, 0) == 1
    bound = failure_rate_upper_95(10, 1000)
    # one-sided Wilson, z = 1.645: 0.01 observed -> 0.01666 (one-sided Clopper-Pearson: 0.0169)
    assert bound == pytest.approx(0.016657, abs=1e-5)
    assert failure_rate_upper_95(1000, 1000) == pytest.approx(1.0)
    assert 0.2 < failure_rate_upper_95(200, 1000) < 0.2 + 3 * math.sqrt(0.2 * 0.8 / 1000)
    rates = [failure_rate_upper_95(k, 500) for k in range(0, 50)]
    assert rates == sorted(rates)  # more failures, a higher bound


# --- writes ------------------------------------------------------------------------------------


def test_lost_writes_counts_each_key_once_from_read_backs_and_the_final_lookup() -> None:
    records = [
        *(rec(RequestKind.WRITE, i, status=201, key=f"k{i}", scheduled=True) for i in range(6)),
        rec(RequestKind.WRITE, 6, error=ErrorKind.HTTP_5XX, status=503, key="k6", scheduled=True),
        rec(RequestKind.READ_BACK, 1.5, error=ErrorKind.MISSING, status=404, key="k0"),
        rec(RequestKind.READ_BACK, 2.5, status=200, key="k1"),
        rec(RequestKind.READ_BACK, 3.5, error=ErrorKind.MISSING, status=404, key="k2"),  # found at the end
        rec(RequestKind.READ_BACK, 4.5, error=ErrorKind.CONNECTION, status=None, key="k3"),  # proves nothing
    ]
    final = WriteCheck(checked=6, missing=frozenset({"k0", "k4"}))
    assert lost_write_keys(records, final) == {"k0", "k2", "k4"}
    assert lost_write_keys(records) == {"k0", "k2"}  # a measurement during the run: read-backs only
    summary = summarize(records, final=final)
    assert (summary.writes, summary.failed_writes, summary.lost_writes) == (7, 1, 3)
    # a read-back that found nothing is an answer, not a failed request; the one without answer is
    assert summary.failed_requests == 2


def test_a_failed_final_read_back_is_inconclusive_never_zero() -> None:
    records = [rec(RequestKind.WRITE, i, status=201, key=f"k{i}", scheduled=True) for i in range(20)]
    records.append(rec(RequestKind.LOOKUP, 21, 22, ErrorKind.TIMEOUT, status=None))
    summary = summarize(records, final=WriteCheck(checked=0, unverified=20))
    assert summary.unverified_writes == 20
    config = HttpProbeConfig(max_failed_requests=None)
    decision, reasons = outcome(summary, config)
    assert decision == "inconclusive"
    assert reasons == [
        "20 acknowledged writes could not be read back at the end: lost_writes 0 is a lower bound"
    ]
    decision, reasons = outcome(summary, HttpProbeConfig())  # the failed lookup itself fails the gate
    assert decision == "failed"
    assert reasons[0] == "1 failed requests > max_failed_requests 0"
    assert reasons[1].startswith("20 acknowledged writes could not be read back")


def test_a_dead_probe_never_passes() -> None:
    records = [rec(RequestKind.PAGE, i) for i in range(100)]
    summary = summarize(records)
    assert outcome(summary, HttpProbeConfig()) == ("passed", [])
    assert outcome(summary, HttpProbeConfig(), trouble="the probe's traffic died: boom") == (
        "inconclusive",
        ["the probe's traffic died: boom"],
    )


def test_streams_sockets_and_rates() -> None:
    records = [
        rec(RequestKind.STREAM, 0, 3, scheduled=True),
        rec(RequestKind.STREAM, 1, 2.5, ErrorKind.CUT, scheduled=True),
        rec(RequestKind.STREAM, 2, 2.1, ErrorKind.CONNECTION, status=None, scheduled=True),  # no answer
        rec(RequestKind.SOCKET, 0, 1.0, status=101),  # closed cleanly by the server
        rec(RequestKind.SOCKET, 1.0, 1.1, ErrorKind.CONNECTION, status=None, reconnect=True),  # not reopened
        rec(RequestKind.SOCKET, 1.6, 2.0, status=101),
        rec(RequestKind.SOCKET, 0, 2.0, ErrorKind.DROPPED, status=101),  # no close frame
        rec(RequestKind.API, 0, 1.5, scheduled=True),  # slow (1500 ms)
        rec(RequestKind.API, 1, 2.5, ErrorKind.TIMEOUT, status=None, scheduled=True),  # failed, not slow
        rec(RequestKind.API, 2, scheduled=True, error=ErrorKind.OVERLOAD, status=None),
    ]
    summary = summarize(records, duration_s=2.0, slow_ms=1000)
    values = summary.values()
    assert (values["streams"], values["cut_streams"], values["stream_failed"]) == (2, 1, 2)
    assert (values["sockets"], values["dropped_sockets"], values["socket_failed"]) == (3, 2, 2)
    assert values["slow_requests"] == 1
    assert values["offered_rps"] == 3.0  # 6 scheduled in 2 s, the overloaded one included
    assert values["achieved_rps"] == 1.0
    assert values["api_requests"] == 3 and values["api_failed"] == 2
    assert values["p99_ms"] == 1500.0  # streams and sockets last by design: not latency


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        (
            {"page": 0.5, "api": 0.3, "write": 0.3},
            r"^mix: the shares must add up to 1 \(got .*'write': 0.3.*1.1\)$",
        ),
        ({"page": 0.5, "video": 0.5}, r"^mix: unknown kind 'video' \(known: page, api, write\)$"),
        ({"page": 1.5, "api": -0.5}, r"^mix.page must be a share between 0 and 1 \(got 1.5\)$"),
        ({"page": "half"}, r"^mix.page must be a share between 0 and 1 \(got 'half'\)$"),
        ([0.5, 0.5], r"^mix must be a table of kinds to shares of rps \(got \[0.5, 0.5\]\)$"),
    ],
)
def test_mix_is_validated_naming_the_field_and_value(mix: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpProbeConfig(mix=mix)  # type: ignore[arg-type]


def test_mix_defaults_and_partial_tables() -> None:
    assert HttpProbeConfig().mix == {"page": 0.5, "api": 0.3, "write": 0.2}
    assert HttpProbeConfig(mix={"api": 1}).mix == {"page": 0.0, "api": 1.0, "write": 0.0}
    assert HttpProbeConfig(mix={"page": 0.1, "api": 0.2, "write": 0.7 + 1e-7}).mix["write"] > 0.7


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("read_back_path", "/api/v4/writes"),
        ("read_back_path", "/api/v4/writes/{id}"),
        ("stream_path", "/-/stream?seconds={seconds}"),
        ("socket_path", "-/cable"),
        ("schedule", "bursty"),
        ("max_in_flight", 0),
        ("slow_ms", 0),
        ("streams", -1),
        ("stream_seconds", 0),
        ("stream_size", 0),
        ("sockets", -2),
        ("max_lost_writes", -1),
        ("max_cut_streams", 1.5),
        ("max_dropped_sockets", -1),
        ("max_slow_requests", -3),
    ],
)
def test_new_options_reject_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} .*\(got {re.escape(repr(value))}\)$"):
        HttpProbeConfig(**{field: value})  # type: ignore[arg-type]


def test_default_thresholds_fail_on_any_failure_loss_cut_drop_or_asset_error() -> None:
    config = HttpProbeConfig()
    assert (
        config.max_failed_requests,
        config.max_lost_writes,
        config.max_cut_streams,
        config.max_dropped_sockets,
        config.max_asset_errors,
    ) == (0, 0, 0, 0, 0)
    assert (config.max_slow_requests, config.max_error_ratio, config.max_p99_ms, config.max_outage_s) == (
        None,
        None,
        None,
        None,
    )


def test_options_load_through_the_configuration_loader() -> None:
    data = {"rps": 200, "mix": {"page": 0.7, "api": 0.3}, "streams": 2, "sockets": 1, "schedule": "poisson"}
    config = structure(data, HttpProbeConfig, "probes[0]")
    assert config.mix == {"page": 0.7, "api": 0.3, "write": 0.0}
    assert (config.streams, config.sockets, config.schedule) == (2, 1, "poisson")
    assert unstructure(config)["mix"] == config.mix
    with pytest.raises(ConfigError, match=r"^probes\[0\]: mix: the shares must add up to 1 \(got .* 0.8\)$"):
        structure({"mix": {"page": 0.5, "api": 0.3}}, HttpProbeConfig, "probes[0]")
