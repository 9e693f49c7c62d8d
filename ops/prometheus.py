"""`genpool metrics`: a Prometheus endpoint over the counters every worker writes to Redis.

Scrape config:

    scrape_configs:
      - job_name: genpool
        static_configs: [{targets: ["genpool-metrics:9464"]}]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from shared import keys
from shared.metrics import LATENCY_BUCKETS_S, read_counters
from shared.settings import Settings

COUNTERS = {
    "attempts_total": ("genpool_requests", "Gemini calls by model, job kind and outcome"),
    "jobs_total": ("genpool_jobs", "Terminal jobs by kind, status and model"),
    "fallbacks_total": ("genpool_fallbacks", "Jobs answered by a model other than the chain's head"),
    "tokens_in_total": ("genpool_tokens_in", "Prompt tokens"),
    "tokens_out_total": ("genpool_tokens_out", "Output tokens"),
    "images_total": ("genpool_images", "Images generated"),
    "cost_usd_total": ("genpool_cost_usd", "Cost in USD from catalog prices"),
    "limiter_wait_seconds_total": ("genpool_limiter_wait_seconds", "Time spent waiting on the rate limiter"),
    "skipped_total": ("genpool_models_skipped", "Models skipped (unavailable, no capacity, context)"),
    "job_failures_total": ("genpool_job_failures", "Failed jobs by error type"),
}


class RedisCollector:
    def __init__(self, conn: redis.Redis) -> None:
        self._redis = conn

    def collect(self) -> Iterator[Metric]:
        rows = read_counters(self._redis.hgetall(keys.metrics_counters()))
        families: dict[str, CounterMetricFamily] = {}
        for name, labels, value in rows:
            if name not in COUNTERS:
                continue
            prom, doc = COUNTERS[name]
            label_names = sorted(labels)
            family = families.setdefault(name, CounterMetricFamily(prom, doc, labels=label_names))
            family.add_metric([labels[k] for k in label_names], value)
        yield from families.values()
        yield from self._latency(rows)
        yield from self._queues()

    def _latency(self, rows: list[tuple[str, dict[str, str], float]]) -> Iterator[Metric]:
        sums = {labels["model"]: v for n, labels, v in rows if n == "latency_seconds_sum"}
        family = HistogramMetricFamily("genpool_request_latency_seconds", "Gemini call latency", labels=["model"])
        for model, total_s in sorted(sums.items()):
            raw = {k.decode(): int(v) for k, v in self._redis.hgetall(keys.metrics_latency(model)).items()}
            cumulative, buckets = 0, []
            for edge in LATENCY_BUCKETS_S:
                label = "+Inf" if edge == float("inf") else f"{edge:g}"
                cumulative += raw.get(label, 0)
                buckets.append((label, cumulative))
            family.add_metric([model], buckets, total_s)
        yield family

    def _queues(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("genpool_queue_depth", "Jobs waiting per queue", labels=["queue"])
        for priority in keys.PRIORITIES:
            name = keys.queue_name(priority)
            gauge.add_metric([name], self._redis.llen(f"rq:queue:{name}"))
        yield gauge


def main(argv: Sequence[str] | None = None) -> int:
    from prometheus_client import REGISTRY, start_http_server

    parser = argparse.ArgumentParser(prog="genpool metrics")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s)
    REGISTRY.register(RedisCollector(conn))
    port = args.port or settings.metrics_port
    start_http_server(port)
    print(f"genpool metrics on http://0.0.0.0:{port}/metrics", file=sys.stderr)
    while True:
        time.sleep(3600)
