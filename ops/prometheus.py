"""`genpool metrics`: a Prometheus endpoint over what every worker writes to Redis (see docs/observability.md).

Each scrape takes one ``Snapshot``: counters, the latency histogram, and gauges for model state, limiter
buckets against limits, and queue depths.
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
}


class RedisCollector:
    """``models``/``defaults`` (the catalog) give state and bucket gauges to models no job has used yet."""

    def __init__(self, conn: redis.Redis, models: Iterable[str] = (),
                 defaults: Mapping[str, ModelLimits] | None = None) -> None:
        self._redis = conn
        self._models = tuple(models)
        self._defaults = defaults

    def collect(self) -> Iterator[Metric]:
        snap = take(self._redis, self._models, self._defaults)
        yield from counters(snap.rows)
        yield latency(snap)
        yield from states(snap)
        yield from buckets(snap)
        yield queues(snap)


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


def buckets(snap: Snapshot) -> Iterator[Metric]:
    labels = ["model", "dimension"]
    level = GaugeMetricFamily("genpool_ratelimit_bucket_level", "Limiter bucket level now (rpd: requests left "
                              "today; negative = reserved ahead)", labels=labels)
    capacity = GaugeMetricFamily("genpool_ratelimit_bucket_capacity", "Limiter bucket capacity (rpd: the "
                                 "daily limit after the safety margin)", labels=labels)
    limit = GaugeMetricFamily("genpool_ratelimit_limit", "The provider's limit per window (rpd: per day)",
                              labels=labels)
    for model, rows in sorted(snap.buckets.items()):
        for b in rows:
            level.add_metric([model, b.dimension], b.level)
            capacity.add_metric([model, b.dimension], b.capacity)
            limit.add_metric([model, b.dimension], b.limit)
    yield from (level, capacity, limit)


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
    REGISTRY.register(RedisCollector(conn, catalog.models, catalog_limits(catalog)))
    port = args.port or settings.metrics_port
    start_http_server(port)
    print(f"genpool metrics on http://0.0.0.0:{port}/metrics", file=sys.stderr)
    while True:
        time.sleep(3600)
