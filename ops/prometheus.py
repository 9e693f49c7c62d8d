"""`genpool metrics`: a Prometheus endpoint over what every worker writes to Redis (see docs/observability.md).

Each scrape takes one ``Snapshot``: counters, the latency histogram, and gauges for model state, limiter
limiter windows against limits, and queue depths.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from genpool.ops.modelstate import STATES
from genpool.ops.snapshot import Row, Snapshot, catalog_limits, take
from genpool.ops.summary import latency_summary
from genpool.shared.catalog import Catalog
from genpool.shared.ratelimit import ModelLimits
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings

COUNTERS = {
    "attempts_total": ("genpool_requests", "Gemini calls by model, job kind and outcome (rate_limited = 429)"),
    "jobs_total": ("genpool_jobs", "Terminal jobs by kind, status and model"),
    "fallbacks_total": ("genpool_fallbacks", "Jobs answered by a model other than the chain's head"),
    "tokens_in_total": ("genpool_tokens_in", "Prompt tokens"),
    "tokens_out_total": ("genpool_tokens_out", "Output tokens"),
    "images_total": ("genpool_images", "Images generated"),
    "cost_usd_total": ("genpool_cost_usd", "Cost in USD from catalog prices"),
    "limiter_wait_seconds_total": ("genpool_limiter_wait_seconds", "Time spent waiting on the rate limiter"),
    "skipped_total": ("genpool_models_skipped", "Models skipped (unavailable, no capacity, context)"),
    "job_failures_total": ("genpool_job_failures", "Failed jobs by kind and error class"),
    "arm_jobs_total": ("genpool_arm_jobs", "Terminal jobs by kind, routing arm (A/B) and status; cache hits not counted"),
    "arm_fallback_jobs_total": ("genpool_arm_fallback_jobs", "Jobs of a routing arm answered by a fallback model"),
    "arm_cost_usd_total": ("genpool_arm_cost_usd", "Cost in USD by kind and routing arm"),
    "cache_hits_total": ("genpool_cache_hits", "Jobs served from the response cache (no call)"),
    "cache_misses_total": ("genpool_cache_misses", "Cacheable jobs that made the paid call"),
    "cache_saved_usd_total": ("genpool_cache_saved_usd", "USD the response cache saved (the served answers' cost)"),
    "budget_alerts_total": ("genpool_budget_alerts", "A budget's spend crossed 50 / 80 / 100 % of its day (level)"),
}


class RedisCollector:
    """``models``/``defaults`` (the catalog) give state and bucket gauges to models no job has used yet."""

    def __init__(self, conn: redis.Redis, models: Iterable[str] = (),
                 defaults: Mapping[str, ModelLimits] | None = None, catalog: Catalog | None = None) -> None:
        self._redis = conn
        self._models = tuple(models)
        self._defaults = defaults
        self._catalog = catalog

    def collect(self) -> Iterator[Metric]:
        snap = take(self._redis, self._models, self._defaults, self._catalog)
        yield from counters(snap.rows)
        yield latency(snap)
        yield from states(snap)
        yield from limiter_windows(snap)
        yield queues(snap)
        yield job_durations(snap)
        yield from control(snap)


def counters(rows: list[Row]) -> Iterator[Metric]:
    # One label set per family: the union over its rows (a label added in a later release reads "" on old rows).
    label_names: dict[str, set[str]] = {}
    for name, labels, _ in rows:
        if name in COUNTERS:
            label_names.setdefault(name, set()).update(labels)
    for name, names in label_names.items():
        ordered = sorted(names)
        family = CounterMetricFamily(*COUNTERS[name], labels=ordered)
        for row_name, labels, value in rows:
            if row_name == name:
                family.add_metric([labels.get(k, "") for k in ordered], value)
        yield family


def latency(snap: Snapshot) -> Metric:
    sums = {labels["model"]: v for n, labels, v in snap.rows if n == "latency_seconds_sum"}
    family = HistogramMetricFamily("genpool_request_latency_seconds", "Gemini call latency", labels=["model"])
    for model, total_s in sorted(sums.items()):
        cumulative = latency_summary(snap.latency.get(model, {}))["buckets"]
        family.add_metric([model], list(cumulative.items()), total_s)
    return family


def states(snap: Snapshot) -> Iterator[Metric]:
    state = GaugeMetricFamily("genpool_model_state", "1 for the model's current fleet-wide state "
                              "(closed, open, half-open, down), 0 for the others", labels=["model", "state"])
    until = GaugeMetricFamily("genpool_model_unavailable_until_timestamp_seconds",
                              "When an open/down model is tried again (0 = available)", labels=["model"])
    cooldown = GaugeMetricFamily("genpool_model_cooldown_until_timestamp_seconds",
                                 "End of the fleet-wide cooldown after a 429 (0 = none)", labels=["model"])
    for model, st in sorted(snap.states.items()):
        for name in STATES:
            state.add_metric([model, name], 1.0 if st.state == name else 0.0)
        until.add_metric([model], st.until_s if st.state in ("open", "down") and st.until_s else 0.0)
        cooldown.add_metric([model], st.cooldown_until_s or 0.0)
    yield from (state, until, cooldown)


def limiter_windows(snap: Snapshot) -> Iterator[Metric]:
    labels = ["model", "dimension"]
    used = GaugeMetricFamily("genpool_ratelimit_window_used", "What the limiter counts in the trailing window "
                             "for the next start (rpd: requests used today)", labels=labels)
    effective = GaugeMetricFamily("genpool_ratelimit_effective_limit", "genpool's ceiling per window: the "
                                  "provider's limit after the safety share (rpd: per day)", labels=labels)
    limit = GaugeMetricFamily("genpool_ratelimit_limit", "The provider's limit per window (rpd: per day)",
                              labels=labels)
    ahead = GaugeMetricFamily("genpool_ratelimit_booked_ahead_seconds", "How far ahead starts are reserved",
                              labels=["model"])
    override = GaugeMetricFamily("genpool_ratelimit_override", "An operator's limits override in force "
                                 "(genpool limits set): the overridden field's value", labels=["model", "field"])
    for model, view in sorted(snap.limiters.items()):
        for w in view.windows:
            used.add_metric([model, w.dimension], w.used)
            effective.add_metric([model, w.dimension], w.effective)
            limit.add_metric([model, w.dimension], w.limit)
        ahead.add_metric([model], view.ahead_s)
        for name, value in sorted(view.override.items()):
            override.add_metric([model, name], float(value))
    yield from (used, effective, limit, ahead, override)


def job_durations(snap: Snapshot) -> Metric:
    sums = {(labels["kind"], labels["arm"]): v for n, labels, v in snap.rows if n == "job_duration_seconds_sum"}
    family = HistogramMetricFamily("genpool_job_duration_seconds", "Job duration by kind and routing arm (A/B)",
                                   labels=["kind", "arm"])
    for (kind, arm), total_s in sorted(sums.items()):
        cumulative = latency_summary(snap.durations.get((kind, arm), {}))["buckets"]
        family.add_metric([kind, arm], list(cumulative.items()), total_s)
    return family


def control(snap: Snapshot) -> Iterator[Metric]:
    """The routing in force (version, overrides, splits) and the budgets (limit, spent, held today)."""
    version = GaugeMetricFamily("genpool_routing_version", "The routing version in force (genpool models)")
    override = GaugeMetricFamily("genpool_routing_override", "1 while an operator's chain overrides the catalog's",
                                 labels=["kind"])
    split = GaugeMetricFamily("genpool_routing_split_percent", "Share of a kind's jobs sent to a candidate model",
                              labels=["kind", "model"])
    routing = snap.routing or {"version": 0, "kinds": {}}
    version.add_metric([], routing["version"])
    for kind, k in sorted(routing["kinds"].items()):
        override.add_metric([kind], 0.0 if k["override"]["chain"] is None else 1.0)
        for model, pct in sorted(k["split"].items()):
            split.add_metric([kind, model], pct)
    yield from (version, override, split)
    labels = ["budget"]
    families = {name: GaugeMetricFamily(f"genpool_budget_{name}_usd", text, labels=labels) for name, text in (
        ("limit", "A budget's USD per Pacific day"), ("spent", "USD spent today against the budget"),
        ("held", "USD held by calls in flight against the budget"))}
    for scope, b in sorted(((snap.budgets or {}).get("budgets") or {}).items()):
        for name, family in families.items():
            family.add_metric([scope], b[f"{name}_usd"])
    yield from families.values()


def queues(snap: Snapshot) -> Metric:
    gauge = GaugeMetricFamily("genpool_queue_depth", "Jobs waiting per queue", labels=["queue"])
    for name, depth in snap.queues.items():
        gauge.add_metric([name], depth)
    return gauge


def main(argv: Sequence[str] | None = None) -> int:
    from prometheus_client import REGISTRY, start_http_server

    from genpool.shared.catalog import load_catalog

    parser = argparse.ArgumentParser(prog="genpool metrics")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    catalog = load_catalog(settings)
    conn = connect(settings)
    REGISTRY.register(RedisCollector(conn, catalog.models, catalog_limits(catalog), catalog))
    port = args.port or settings.metrics_port
    start_http_server(port)
    print(f"genpool metrics on http://0.0.0.0:{port}/metrics", file=sys.stderr)
    while True:
        time.sleep(3600)
