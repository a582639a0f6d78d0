"""The report of one upgrade, from its journal: for a person in a terminal, and as one HTML page.

Everything comes from the journal, so a report can be made at any time after the upgrade, on any
machine that has the journal file: the phases (``phase-started``/``-finished`` events), every gate
decision with its checks and values (``measurement-*`` and ``gate-failed`` events), the probes'
figures at the end (the recorded :class:`~zdu.model.Report`), the redacted configuration, and what
the probes' zeros are worth: ``0 failed of n`` bounds the failure rate below ``1 - 0.05^(1/n)`` with
95 % confidence (about ``3/n``, the rule of three).

:func:`render_html` writes one self-contained page: the timeline picture (drawn with matplotlib,
embedded as a PNG) and the page itself (a jinja2 template, ``templates/report.html.j2``). They are
in the ``report`` extra (``pip install 'zdu[report]'``); the text report needs neither.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from zdu.errors import UsageError
from zdu.journal import Journal, UpgradeRecord
from zdu.model import Event
from zdu.secret import redact

__all__ = [
    "GateDecision",
    "PhaseSpan",
    "Second",
    "UpgradeView",
    "failure_rate_upper_95",
    "load_view",
    "render_html",
    "render_text",
    "timeline_png",
]

#: Events the human report lists (the rest is in ``--json``).
_SHOWN = {
    "phase-started",
    "phase-finished",
    "phase-failed",
    "step-started",
    "step-failed",
    "gate-failed",
    "measurement-failed",
    "measurement-inconclusive",
    "rollback",
    "paused",
    "error",
    "analysis",
    "migrations-applied",
    "migrations",
    "lock-retry",
    "invalid-index-dropped",
    "invalid-index-left",
    "background-migrations",
    "probe-started",
    "unsafe",
}


def failure_rate_upper_95(failed: int, requests: int) -> float:
    """The 95 % upper confidence bound of a failure rate seen as ``failed`` of ``requests``.

    Exact (Clopper-Pearson) for zero failures: ``1 - 0.05^(1/n)``; for others the Wilson bound.
    """
    if requests <= 0:
        return 1.0
    if failed <= 0:
        return float(1 - 0.05 ** (1 / requests))
    z, p = 1.959964, failed / requests
    centre = p + z * z / (2 * requests)
    spread = z * math.sqrt(p * (1 - p) / requests + z * z / (4 * requests * requests))
    return min(1.0, (centre + spread) / (1 + z * z / requests))


#: The counts whose rates a report bounds, each with what it is a count of (figure, unit).
_RATES = {
    "failed_requests": ("requests", "requests"),
    "asset_errors": ("asset_requests", "assets"),
    "lost_writes": ("writes", "writes"),
    "cut_streams": ("streams", "streams"),
    "dropped_sockets": ("sockets", "websockets"),
}


@attrs.frozen
class PhaseSpan:
    """One phase as it ran: when, how long, and how it ended."""

    name: str
    start: float
    end: float
    outcome: str


@attrs.frozen
class GateDecision:
    """One gate measurement of one probe: its decision, figures and checks."""

    at: float
    phase: str
    step: str
    probe: str
    decision: str
    values: Mapping[str, Any]
    evaluations: tuple[Mapping[str, Any], ...]
    reasons: tuple[str, ...]


@attrs.frozen
class Second:
    """One second of the timeline (rates spread evenly over each measurement's window)."""

    t: float
    ok: float = 0.0
    failed: float = 0.0
    asset_errors: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    new_share: float | None = None


@attrs.frozen
class UpgradeView:
    """One upgrade as the journal holds it, ready to be reported."""

    record: UpgradeRecord
    events: tuple[Event, ...]

    @property
    def started_at(self) -> float:
        """When the upgrade started (wall clock)."""
        return self.record.started_at

    @property
    def finished_at(self) -> float:
        """When it ended (or the last event, while it runs)."""
        last = self.events[-1].at if self.events else self.started_at
        return self.record.finished_at or last

    @property
    def phases(self) -> list[PhaseSpan]:
        """Every phase that started, in order."""
        spans: list[PhaseSpan] = []
        open_: dict[str, float] = {}
        for event in self.events:
            name = str(event.data.get("phase", event.phase))
            if event.kind == "phase-started":
                open_[name] = event.at
            elif event.kind in ("phase-finished", "phase-failed") and name in open_:
                outcome = "succeeded" if event.kind == "phase-finished" else "failed"
                spans.append(PhaseSpan(name, open_.pop(name), event.at, outcome))
        spans += [PhaseSpan(name, start, self.finished_at, "running") for name, start in open_.items()]
        return sorted(spans, key=lambda s: s.start)

    @property
    def decisions(self) -> list[GateDecision]:
        """Every gate measurement recorded, oldest first."""
        found = []
        for event in self.events:
            if not event.kind.startswith("measurement-"):
                continue
            data = event.data
            found.append(
                GateDecision(
                    at=event.at,
                    phase=event.phase,
                    step=str(data.get("step", "")),
                    probe=str(data.get("probe", "")),
                    decision=str(data.get("status", event.kind.removeprefix("measurement-"))),
                    values=dict(data.get("values", {})),
                    evaluations=tuple(data.get("evaluations", ())),
                    reasons=tuple(data.get("reasons", ())),
                )
            )
        return found

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        """The probes' verdicts over the whole upgrade, as the final report recorded them."""
        report = self.record.report or {}
        return list(report.get("verdicts", []))

    def zeros(self) -> list[dict[str, Any]]:
        """What each probe's counts are worth: the 95 % upper bound of each rate it counted."""
        reach = []
        for verdict in self.verdicts:
            values = verdict.get("values", {})
            for name, (of, unit) in _RATES.items():
                total = int(
                    values.get(of, values.get("requests", 0)) if of == "asset_requests" else values.get(of, 0)
                )
                if name in values and total > 0:
                    count = int(values[name])
                    reach.append(
                        {
                            "probe": verdict.get("probe", ""),
                            "figure": name,
                            "count": count,
                            "of": total,
                            "unit": unit,
                            "upper_95": failure_rate_upper_95(count, total),
                        }
                    )
        return reach

    def timeline(self) -> list[Second]:
        """Per second since the start: requests ok, failed, asset errors, latency, the release's share.

        Built from the measurements of the probes that count requests; each measurement's counts are
        spread evenly over the seconds of its window.
        """
        buckets: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        levels: dict[int, dict[str, float]] = defaultdict(dict)
        start = self.started_at
        for event in self.events:
            if not event.kind.startswith("measurement-"):
                continue
            data = event.data
            values = data.get("values", {})
            began, ended = float(data.get("started_at") or 0), float(data.get("finished_at") or event.at)
            share = data.get("new_share")
            if isinstance(share, int | float) and share >= 0:  # the share when the gate measured
                levels[int(event.at - start)]["new_share"] = float(share)
            if "requests" not in values or began <= 0 or ended <= began:
                continue
            failed = float(values.get("failed_requests", 0))
            assets = float(values.get("asset_errors", 0))
            ok = max(float(values["requests"]) - failed - assets, 0.0)
            for second, weight in _spread(began - start, ended - start):
                bucket = buckets[second]
                bucket["ok"] += ok * weight
                bucket["failed"] += failed * weight
                bucket["asset_errors"] += assets * weight
                for name in ("p50_ms", "p99_ms"):
                    if name in values:
                        levels[second][name] = max(levels[second].get(name, 0.0), float(values[name]))
        self._add_unmeasured_tail(buckets, start)
        last = int(self.finished_at - start) + 1
        return [
            Second(
                t=float(second),
                ok=buckets[second]["ok"] if second in buckets else 0.0,
                failed=buckets[second]["failed"] if second in buckets else 0.0,
                asset_errors=buckets[second]["asset_errors"] if second in buckets else 0.0,
                p50_ms=levels[second].get("p50_ms"),
                p99_ms=levels[second].get("p99_ms"),
                new_share=levels[second].get("new_share"),
            )
            for second in range(max(last, 1))
        ]

    def _add_unmeasured_tail(self, buckets: dict[int, dict[str, float]], start: float) -> None:
        """Spread what each probe counted after its last measurement over the time left.

        That is its verdict's totals beyond its measurements' (a rollback gates nothing, and the end
        comes after the last gate), from the last measurement to the end of the upgrade.
        """
        measured: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        last: dict[str, float] = {}
        for event in self.events:
            if event.kind.startswith("measurement-") and "requests" in event.data.get("values", {}):
                probe, values = str(event.data.get("probe", "")), event.data["values"]
                for name in ("requests", "failed_requests", "asset_errors"):
                    measured[probe][name] += float(values.get(name, 0))
                last[probe] = float(event.data.get("finished_at") or event.at)
        for verdict in self.verdicts:
            probe, values = str(verdict.get("probe", "")), verdict.get("values", {})
            if probe not in last or "requests" not in values:
                continue
            rest = {name: float(values.get(name, 0)) - measured[probe][name] for name in measured[probe]}
            if rest["requests"] <= 0 or self.finished_at <= last[probe]:
                continue
            ok = max(rest["requests"] - rest["failed_requests"] - rest["asset_errors"], 0.0)
            for second, weight in _spread(last[probe] - start, self.finished_at - start):
                buckets[second]["ok"] += ok * weight
                buckets[second]["failed"] += max(rest["failed_requests"], 0.0) * weight
                buckets[second]["asset_errors"] += max(rest["asset_errors"], 0.0) * weight


def _spread(begin: float, end: float) -> list[tuple[int, float]]:
    """The seconds ``[begin, end)`` covers, each with its share of the window."""
    length = end - begin
    parts = []
    second = math.floor(begin)
    while second < end:
        overlap = min(end, second + 1) - max(begin, second)
        if overlap > 0:
            parts.append((second, overlap / length))
        second += 1
    return parts


def load_view(journal: Journal, upgrade_id: str) -> UpgradeView:
    """The upgrade ``upgrade_id`` of ``journal``; :class:`UsageError` naming the journal if absent."""
    record = journal.get(upgrade_id)
    if record is None:
        raise UsageError(f"no upgrade {upgrade_id!r} in the journal {journal.path}")
    return UpgradeView(record, tuple(journal.events(upgrade_id)))


def _clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


def _date(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _figures(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_number(v)}" for k, v in values.items())


def render_text(view: UpgradeView) -> str:
    """The report for a person: outcome, phases with times, gate decisions, figures, events."""
    r = view.record
    lines = [
        f"upgrade {r.id} of {r.target}: {r.from_version} -> {r.to_version} with "
        f"{' + '.join((r.strategy, *r.layers))}: {r.status.value}",
        f"  started {_date(view.started_at)}, "
        + (
            f"ended after {view.finished_at - view.started_at:.1f} s"
            if r.finished_at
            else "still in progress"
        ),
    ]
    if r.error:
        lines.append(f"  reason: {r.error}")
    if view.phases:
        lines.append("phases:")
        lines += [
            f"  {_clock(p.start)}  {p.name:<14} {p.outcome:<9} {p.end - p.start:6.1f} s" for p in view.phases
        ]
    gated = [d for d in view.decisions if d.evaluations or d.decision != "successful"]
    if gated:
        lines.append("gate decisions with checks:")
        for d in gated:
            lines.append(f"  {_clock(d.at)}  {d.probe} after {d.step}: {d.decision}")
            for e in d.evaluations:
                value = "no data" if e.get("value") is None else _number(e.get("value"))
                why = f" ({e['reason']})" if e.get("reason") else ""
                check, threshold, decision = e.get("check"), e.get("threshold"), e.get("decision")
                lines.append(f"      {check}: {value}, threshold {threshold}: {decision}{why}")
    if view.verdicts:
        lines.append("probes over the whole upgrade:")
        for v in view.verdicts:
            dry = " (dry run)" if v.get("dry_run") else ""
            lines.append(f"  {v.get('probe')}: {v.get('status')}{dry}; {_figures(v.get('values', {}))}")
            lines += [f"    - {reason}" for reason in v.get("reasons", [])]
    for zero in view.zeros():
        if zero["count"] == 0:
            lines.append(
                f"  {zero['probe']}: 0 {zero['figure'].replace('_', ' ')} of {zero['of']} {zero['unit']}: "
                f"the rate is below {zero['upper_95']:.3%} with 95 % confidence"
            )
    lines.append("events:")
    lines += [
        f"  {_clock(e.at)}  {e.phase:<14} {e.kind:<20} {e.message}" for e in view.events if e.kind in _SHOWN
    ]
    return redact("\n".join(lines))


# -- the page --------------------------------------------------------------------------------------

#: Colours of the picture (only the picture uses them: a test looks for them in a screenshot).
COLOURS = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "asset_errors": "#ef6c00",
    "p50": "#1565c0",
    "p99": "#6a1b9a",
    "share": "#00838f",
}


#: The phases' bands in the picture.
_PHASE_COLOURS = {
    "preflight": "#eceff1",
    "migrate(pre)": "#ede7f6",
    "prepare": "#eceff1",
    "rollout": "#e3f2fd",
    "verify": "#e8f5e9",
    "finalize": "#fff8e1",
    "migrate(post)": "#ede7f6",
    "cleanup": "#eceff1",
    "rollback": "#ffebee",
}


def _need(module: str) -> Any:
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"the HTML report needs {module.split('.', maxsplit=1)[0]}: pip install 'zdu[report]'"
        ) from None


def timeline_png(view: UpgradeView, *, width_in: float = 12.0) -> bytes:
    """The timeline picture as PNG.

    Phases as bands; requests per second (ok, failed, asset errors); latency p50/p99; the release's
    share of traffic.
    """
    matplotlib = _need("matplotlib")
    matplotlib.use("Agg", force=True)
    pyplot = _need("matplotlib.pyplot")
    seconds = view.timeline()
    t = [s.t for s in seconds]
    figure, (requests, latency, share) = pyplot.subplots(
        3, 1, sharex=True, figsize=(width_in, 7.5), height_ratios=[3, 2, 1.2], layout="constrained"
    )
    ok = [s.ok for s in seconds]
    failed = [s.failed for s in seconds]
    assets = [s.asset_errors for s in seconds]
    requests.bar(t, ok, width=1.0, align="edge", color=COLOURS["ok"], label="ok")
    requests.bar(t, failed, width=1.0, align="edge", bottom=ok, color=COLOURS["failed"], label="failed")
    stacked = [a + b for a, b in zip(ok, failed, strict=True)]
    requests.bar(
        t,
        assets,
        width=1.0,
        align="edge",
        bottom=stacked,
        color=COLOURS["asset_errors"],
        label="asset errors",
    )
    requests.set_ylabel("requests / s")
    requests.legend(loc="upper right", fontsize="small")
    for name, colour in (("p50_ms", COLOURS["p50"]), ("p99_ms", COLOURS["p99"])):
        points = [(s.t + 0.5, getattr(s, name)) for s in seconds if getattr(s, name) is not None]
        if points:
            latency.plot(
                *zip(*points, strict=True), color=colour, label=name.replace("_ms", ""), linewidth=1.5
            )
    latency.set_ylabel("latency (ms)")
    if latency.get_legend_handles_labels()[0]:
        latency.legend(loc="upper right", fontsize="small")
    shares = [(s.t, s.new_share) for s in seconds if s.new_share is not None]
    if shares and shares[0][0] > 0:
        shares.insert(0, (0.0, 0.0))  # the upgrade starts with the old version serving alone
    if shares:
        share.step(*zip(*shares, strict=True), where="post", color=COLOURS["share"], linewidth=2)
    share.set_ylim(-0.05, 1.05)
    share.set_ylabel(f"share of\n{view.record.to_version}")
    share.set_xlabel(f"seconds since {_date(view.started_at)}")
    total = max(len(seconds), 1)
    for span in view.phases:
        begin, end = span.start - view.started_at, span.end - view.started_at
        colour = "#ffcdd2" if span.outcome == "failed" else _PHASE_COLOURS.get(span.name, "#eeeeee")
        for axis in (requests, latency, share):
            axis.axvspan(begin, end, color=colour, zorder=0)
        if end - begin >= 0.04 * total:  # short phases are in the table below the picture
            requests.annotate(
                span.name,
                xy=((begin + end) / 2, 1.01),
                xycoords=("data", "axes fraction"),
                fontsize="small",
                va="bottom",
                ha="center",
            )
    requests.set_xlim(0, total)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


def render_html(view: UpgradeView, path: Path) -> Path:
    """Write the self-contained HTML report of ``view`` to ``path``; return ``path``."""
    jinja2 = _need("jinja2")
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("zdu", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["clock"] = _clock
    environment.filters["number"] = _number
    environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, default=str)
    environment.filters["figures"] = _main_figures
    template = environment.get_template("report.html.j2")
    r = view.record
    picture = base64.b64encode(timeline_png(view)).decode("ascii")
    page = template.render(
        record=r,
        title=f"{r.target} {r.from_version} → {r.to_version}: {r.status.value.replace('_', ' ')}",
        started=_date(view.started_at),
        duration=view.finished_at - view.started_at,
        phases=[attrs.asdict(p) | {"offset": p.start - view.started_at} for p in view.phases],
        decisions=_shown_decisions(view.decisions),
        measured=len(view.decisions),
        verdicts=view.verdicts,
        zeros=view.zeros(),
        events=[e for e in view.events if e.kind in _SHOWN],
        config=r.config,
        picture=picture,
        colours=COLOURS,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact(page), encoding="utf-8")  # the journal's text is redacted already; again
    return path


#: Up to this many measurements, the page lists every one; past it, those with checks or that did not pass.
_ALL_DECISIONS = 300


#: The figures the decisions table shows of a measurement without checks (when it has them).
_MAIN_FIGURES = (
    "requests",
    "failed_requests",
    "asset_errors",
    "lost_writes",
    "cut_streams",
    "dropped_sockets",
    "error_ratio",
    "p50_ms",
    "p99_ms",
    "longest_outage_s",
)


def _main_figures(values: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in values.items() if k in _MAIN_FIGURES} or dict(values)
    return ", ".join(f"{k}={_number(v)}" for k, v in shown.items())


def _shown_decisions(decisions: list[GateDecision]) -> list[GateDecision]:
    if len(decisions) <= _ALL_DECISIONS:
        return decisions
    return [d for d in decisions if d.evaluations or d.decision != "successful"]


def render_index(entries: Sequence[tuple[str, str, str]], path: Path) -> Path:
    """An index page linking reports: ``(title, status, relative href)`` each."""
    jinja2 = _need("jinja2")
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("zdu", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    page = environment.get_template("index.html.j2").render(entries=entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact(page), encoding="utf-8")  # the journal's text is redacted already; again
    return path
