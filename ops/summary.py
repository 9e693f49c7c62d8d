"""A ``Snapshot`` as plain JSON-able dicts: per model, per job kind, fallbacks, failures, state, buckets, queues.

This is `genpool stats --json` and what the table and the report are drawn from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from genpool.ops.snapshot import LimiterView, Snapshot
from genpool.shared.metrics import LATENCY_BUCKETS_S

Totals = dict[str, dict[str, float]]
#: Counters summed per model and per kind under their own name.
SUMMED = ("tokens_in_total", "tokens_out_total", "cost_usd_total", "images_total", "limiter_wait_seconds_total",
          "latency_seconds_sum")


def _attempt(models: Totals, kinds: Totals, labels: dict[str, str], value: float) -> None:
    for totals, key in ((models, labels["model"]), (kinds, labels.get("kind", "unknown"))):
        totals[key]["requests"] += value
        totals[key][f"outcome:{labels['outcome']}"] += value


def _summed(name: str) -> Callable[[Totals, Totals, dict[str, str], float], None]:
    def add(models: Totals, kinds: Totals, labels: dict[str, str], value: float) -> None:
        if "model" in labels:
            models[labels["model"]][name] += value
        if "kind" in labels:
            kinds[labels["kind"]][name] += value
    return add


def _skipped(models: Totals, kinds: Totals, labels: dict[str, str], value: float) -> None:
    models[labels["model"]][f"skipped:{labels['reason']}"] += value


def _job(models: Totals, kinds: Totals, labels: dict[str, str], value: float) -> None:
    kinds[labels["kind"]][labels["status"]] += value


def _job_failure(models: Totals, kinds: Totals, labels: dict[str, str], value: float) -> None:
    kinds[labels["kind"]][f"failures:{labels['error']}"] += value


HANDLERS: dict[str, Callable[[Totals, Totals, dict[str, str], float], None]] = {
    "attempts_total": _attempt, "skipped_total": _skipped, "jobs_total": _job,
    "job_failures_total": _job_failure, **{name: _summed(name) for name in SUMMED},
}


def summarize(snap: Snapshot) -> dict[str, Any]:
    models: Totals = defaultdict(lambda: defaultdict(float))
    kinds: Totals = defaultdict(lambda: defaultdict(float))
    for name, labels, value in snap.rows:
        if name in HANDLERS:
            HANDLERS[name](models, kinds, labels, value)
    for model in snap.models:
        _derive(models[model])
    return {
        "now_s": snap.now_s,
        "models": {m: {**v, **_model_live(snap, m)} for m, v in sorted(models.items())},
        "kinds": {k: dict(v) for k, v in sorted(kinds.items())},
        "fallbacks": _fallbacks(snap),
        "fallbacks_by_kind": _fallbacks_by_kind(snap),
        "failures": _failures(snap),
        "queues": dict(snap.queues),
        "arms": arms(snap),
        "cache": cache(snap),
        "routing": snap.routing,
        "budgets": snap.budgets,
    }


def arms(snap: Snapshot) -> dict[str, dict[str, dict[str, Any]]]:
    """Per job kind and routing arm: jobs, failure and fallback rates, job duration p50/p95, cost per job
    (`genpool stats --by-arm`); each arm also compared with its kind's control arm."""
    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, labels, value in snap.rows:
        if name.startswith("arm_") and "arm" in labels:
            key = name if name != "arm_jobs_total" else f"jobs:{labels.get('status', '')}"
            totals[(labels["kind"], labels["arm"])][key] += value
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (kind, arm), t in sorted(totals.items()):
        finished, failed = t["jobs:finished"], t["jobs:failed"]
        jobs = finished + failed
        latency = latency_summary(snap.durations.get((kind, arm), {}))
        out[kind][arm] = {
            "jobs": jobs, "finished": finished, "failed": failed,
            "failure_rate": _ratio(failed, jobs), "fallback_rate": _ratio(t["arm_fallback_jobs_total"], finished),
            "cost_usd": round(t["arm_cost_usd_total"], 6), "cost_per_job_usd": _ratio(t["arm_cost_usd_total"], jobs, 8),
            "p50_le_s": latency["p50_le_s"], "p95_le_s": latency["p95_le_s"],
        }
    for kind_arms in out.values():
        _versus_control(kind_arms)
    return dict(out)


def _versus_control(kind_arms: dict[str, dict[str, Any]]) -> None:
    control = kind_arms.get("control")
    for arm, entry in kind_arms.items():
        if control is None or arm == "control":
            continue
        entry["vs_control"] = {name: _ratio(entry[name] or 0.0, control[name] or 0.0, 3)
                               for name in ("p50_le_s", "p95_le_s", "cost_per_job_usd", "fallback_rate")}


def cache(snap: Snapshot) -> dict[str, Any]:
    """Hits (served without a call), misses (cacheable jobs that paid), hit ratio and money saved."""
    hits = sum(v for n, _, v in snap.rows if n == "cache_hits_total")
    misses = sum(v for n, _, v in snap.rows if n == "cache_misses_total")
    saved = sum(v for n, _, v in snap.rows if n == "cache_saved_usd_total")
    return {"hits": hits, "misses": misses, "hit_ratio": _ratio(hits, hits + misses), "saved_usd": round(saved, 6)}


def _ratio(part: float, whole: float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def _derive(m: dict[str, float]) -> None:
    """429s and other errors as their own numbers (the table's columns)."""
    m["requests"] += 0
    m["rate_limited"] = m.get("outcome:rate_limited", 0.0)
    m["errors"] = m["requests"] - m.get("outcome:ok", 0.0) - m["rate_limited"]


def _model_live(snap: Snapshot, model: str) -> dict[str, Any]:
    return {"latency": latency_summary(snap.latency.get(model, {})),
            "state": asdict(snap.states[model]) if model in snap.states else None,
            "limiter": _limiter(snap.limiters.get(model))}


def _limiter(view: LimiterView | None) -> dict[str, Any]:
    if view is None:
        return {"window": {}, "ahead_s": 0.0, "override": {}}
    return {"window": {w.dimension: {"used": int(w.used), "effective": w.effective, "limit": w.limit}
                       for w in view.windows},
            "ahead_s": round(view.ahead_s, 3), "override": view.override}


def latency_summary(counts: dict[str, int]) -> dict[str, Any]:
    """Cumulative buckets (Prometheus ``le``) and p50/p95 as the upper bound of their bucket."""
    cumulative, running = {}, 0
    for edge in LATENCY_BUCKETS_S:
        label = bucket_label(edge)
        running += counts.get(label, 0)
        cumulative[label] = running
    return {"buckets": cumulative, "count": running,
            "p50_le_s": _quantile(cumulative, 0.5), "p95_le_s": _quantile(cumulative, 0.95)}


def bucket_label(edge: float) -> str:
    return "+Inf" if edge == float("inf") else f"{edge:g}"


def _quantile(cumulative: dict[str, int], q: float) -> float | None:
    total = cumulative.get("+Inf", 0)
    for label, count in cumulative.items():
        if total and count >= q * total:
            return None if label == "+Inf" else float(label)
    return None


def _fallbacks(snap: Snapshot) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for name, labels, value in snap.rows:
        if name == "fallbacks_total":
            out[f"{labels['from']}->{labels['to']}"] += value
    return dict(sorted(out.items()))


def _fallbacks_by_kind(snap: Snapshot) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, labels, value in snap.rows:
        if name == "fallbacks_total":
            out[labels.get("kind", "unknown")][f"{labels['from']}->{labels['to']}"] += value
    return {k: dict(v) for k, v in sorted(out.items())}


def _failures(snap: Snapshot) -> dict[str, float]:
    """Failed jobs by error class, every kind together."""
    out: dict[str, float] = defaultdict(float)
    for name, labels, value in snap.rows:
        if name == "job_failures_total":
            out[labels["error"]] += value
    return dict(sorted(out.items()))
