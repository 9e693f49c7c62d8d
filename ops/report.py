"""`genpool report --out report.html`: requests/min per model against its quota over time, fallbacks and cost.

One self-contained HTML file (inline SVG, no JavaScript). ``--out report.png`` draws the rate charts with
matplotlib instead, when it is installed (it is not a runtime dependency).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import redis

from genpool.ops import svg
from genpool.ops.snapshot import Snapshot, catalog_limits, take
from genpool.ops.summary import summarize
from genpool.ops.tables import state_text
from genpool.shared.catalog import load_catalog
from genpool.shared.errors import GenpoolError
from genpool.shared.metrics import TIMELINE_STEP_S, TimelinePoint, read_timeline
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings

RATE_WINDOW_S = 60  # requests/min = calls in the trailing minute, sampled every TIMELINE_STEP_S
CALLS_COLOR, LIMITED_COLOR, QUOTA_COLOR, CEILING_COLOR = "#2b6cb0", "#c53030", "#444", "#dd8a00"


@dataclass(frozen=True)
class ModelRates:
    model: str
    calls: list[tuple[float, float]]  # (slot end, requests in the trailing minute)
    limited: list[tuple[float, float]]
    total_calls: int
    total_limited: int

    @property
    def peak(self) -> float:
        return max((v for _, v in self.calls), default=0.0)


def rates(points: Sequence[TimelinePoint], start_s: float, end_s: float) -> dict[str, ModelRates]:
    """Per model, the trailing-minute request rate at every slot of [start_s, end_s]."""
    calls: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    limited: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for p in points:
        calls[p.model][p.at_s] += p.calls
        if p.outcome == "rate_limited":
            limited[p.model][p.at_s] += p.calls
    slots = range(int(start_s // TIMELINE_STEP_S) * TIMELINE_STEP_S, int(end_s) + 1, TIMELINE_STEP_S)
    return {m: ModelRates(m, _trailing(calls[m], slots, end_s), _trailing(limited[m], slots, end_s),
                          sum(calls[m].values()), sum(limited[m].values())) for m in sorted(calls)}


def _trailing(counts: dict[int, int], slots: range, end_s: float) -> list[tuple[float, float]]:
    """At each slot's end (the last one: now), the calls of that slot and the ones before it in the minute."""
    per = RATE_WINDOW_S // TIMELINE_STEP_S
    out = []
    for slot in slots:
        window = sum(counts.get(slot - i * TIMELINE_STEP_S, 0) for i in range(per))
        out.append((min(float(slot + TIMELINE_STEP_S), end_s), float(window) * 60 / RATE_WINDOW_S))
    return out


def quotas(snap: Snapshot, model: str) -> list[svg.Quota]:
    for b in snap.buckets.get(model, []):
        if b.dimension == "rpm":
            per_min = 60 / b.window_s
            return [svg.Quota("quota", b.limit * per_min, QUOTA_COLOR),
                    svg.Quota("genpool ceiling", b.effective * per_min, CEILING_COLOR)]
    return []


@dataclass(frozen=True)
class Report:
    snap: Snapshot
    summary: dict[str, Any]
    rates: dict[str, ModelRates]
    start_s: float
    end_s: float


def gather(conn: redis.Redis, settings: Settings, window_s: float) -> Report:
    catalog = load_catalog(settings)
    snap = take(conn, catalog.models, catalog_limits(catalog))
    points = read_timeline(conn, snap.now_s - window_s, snap.now_s + TIMELINE_STEP_S)
    start_s = max(snap.now_s - window_s, points[0].at_s - RATE_WINDOW_S) if points else snap.now_s - 600
    return Report(snap, summarize(snap), rates(points, start_s, snap.now_s), start_s, snap.now_s)


# --- HTML ---------------------------------------------------------------------------------------------

STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
h2{margin-top:28px}.note{color:#666}"""


def render_html(report: Report) -> str:
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>genpool report</title>"
            f"<style>{STYLE}</style></head><body><h1>genpool report</h1>")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.end_s))
    intro = (f"<p class='note'>Generated {when}. Charts: calls per model in the trailing minute, every "
             f"{TIMELINE_STEP_S} s, since {time.strftime('%H:%M:%S', time.gmtime(report.start_s))} UTC. "
             "Tables: totals since the counters were last reset.</p>")
    sections = [_charts(report), _models_table(report), _fallbacks(report), _cost(report), _kinds(report)]
    return head + intro + "".join(sections) + "</body></html>\n"


def _charts(report: Report) -> str:
    parts = ["<h2>Requests per minute per model, against its quota</h2>"]
    if not report.rates:
        parts.append("<p class='note'>No calls in this window.</p>")
    for model, r in report.rates.items():
        series = [svg.Series("calls", "calls", CALLS_COLOR, r.calls, r.total_calls),
                  svg.Series("429", "rate-limited", LIMITED_COLOR, r.limited, r.total_limited)]
        title = f"{model}: {r.total_calls} calls, {r.total_limited} answered 429, peak {r.peak:g}/min"
        parts.append(svg.rate_chart(title, model, series, quotas(report.snap, model), report.start_s,
                                    report.end_s))
    return "".join(parts)


def _table(css: str, header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr data-key={quoteattr(key)}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
                   for key, cells in rows)
    return f"<table class={quoteattr(css)}><tr>{head}</tr>{body}</table>"


def _models_table(report: Report) -> str:
    rows = []
    for model, m in report.summary["models"].items():
        r = report.rates.get(model)
        quota = next((q.per_minute for q in quotas(report.snap, model) if q.label == "quota"), 0.0)
        peak = r.peak if r else 0.0
        share = f"{peak / quota:.1%}" if quota else "-"
        rows.append((model, [model, state_text(m["state"]), f"{m['requests']:.0f}", f"{m.get('outcome:ok', 0):.0f}",
                             f"{m['rate_limited']:.0f}", f"{m['errors']:.0f}", f"{peak:g}",
                             f"{quota:g}" if quota else "-", share, f"{m.get('cost_usd_total', 0):.6f}"]))
    header = ("model", "state", "calls", "ok", "429", "errors", "peak req/min", "quota req/min", "peak of quota",
              "cost $")
    return "<h2>Models</h2>" + _table("models", header, rows)


def _fallbacks(report: Report) -> str:
    rows = [(f"{kind}:{pair}", [pair.replace("->", " → "), kind, f"{n:.0f}"])
            for kind, pairs in report.summary["fallbacks_by_kind"].items() for pair, n in pairs.items()]
    if not rows:
        return "<h2>Fallbacks</h2><p class='note'>No fallbacks.</p>"
    bars = svg.bar_chart("fallback-chart", [(pair.replace("->", " → "), n)
                                            for pair, n in report.summary["fallbacks"].items()], "jobs")
    return "<h2>Fallbacks</h2>" + _table("fallbacks", ("from → to", "kind", "jobs"), rows) + bars


def _cost(report: Report) -> str:
    costs = [(m, v.get("cost_usd_total", 0.0)) for m, v in report.summary["models"].items()
             if v.get("cost_usd_total", 0.0) > 0]
    total = sum(v for _, v in costs)
    return (f"<h2>Cost per model</h2><p>Total <span class='total-cost' data-usd='{total!r}'>${total:.6f}</span> "
            "(catalog prices).</p>" + svg.bar_chart("cost-chart", costs, "USD"))


def _kinds(report: Report) -> str:
    rows = [(kind, [kind, f"{k.get('requests', 0):.0f}", f"{k.get('finished', 0):.0f}", f"{k.get('failed', 0):.0f}",
                    f"{k.get('cost_usd_total', 0):.6f}"]) for kind, k in report.summary["kinds"].items()]
    return "<h2>Jobs per kind</h2>" + _table("kinds", ("kind", "calls", "finished", "failed", "cost $"), rows)


# --- CLI ----------------------------------------------------------------------------------------------

def write(report: Report, out: Path) -> None:
    if out.suffix.lower() == ".png":
        from genpool.ops.report_png import render_png

        render_png(report, out)
    else:
        out.write_text(render_html(report), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool report")
    parser.add_argument("--out", default="report.html", help="report.html, or report.png (needs matplotlib)")
    parser.add_argument("--window-s", type=float, default=3600.0, help="how far back the charts go")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        conn = connect(settings)
        write(gather(conn, settings, args.window_s), Path(args.out))
    except (redis.RedisError, GenpoolError) as exc:
        print(f"genpool report: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"genpool report: PNG output needs matplotlib ({exc}); use --out report.html", file=sys.stderr)
        return 1
    print(f"genpool report: wrote {args.out}", file=sys.stderr)
    return 0
