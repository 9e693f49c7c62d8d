"""The worker's per-process metrics: summed across jobs, written in one pipeline, kept while Redis is away."""

from __future__ import annotations

import redis

from genpool.shared import keys
from genpool.shared.metrics import MetricsBatch, read_counters, total
from genpool.worker.metricsflush import MetricsFlusher


def _job(model: str = "m1") -> MetricsBatch:
    batch = MetricsBatch()
    batch.inc("jobs_total", kind="text", status="finished", model=model)
    batch.observe_latency(model, 0.3)
    batch.timeline_call(model, "ok", at_s=1_000_000)
    batch.add_spend(model, 25)
    return batch


def _counters(conn: redis.Redis) -> list[tuple[str, dict[str, str], float]]:
    return read_counters(conn.hgetall(keys.metrics_counters()))  # type: ignore[arg-type]


def test_many_jobs_are_written_as_one_sum_per_field(fake_redis: redis.Redis) -> None:
    flusher = MetricsFlusher(fake_redis, every_s=60)
    for _ in range(50):
        flusher.add(_job())
    assert _counters(fake_redis) == []  # nothing written per job
    assert flusher.flush()
    rows = _counters(fake_redis)
    assert total(rows, "jobs_total", model="m1") == 50
    assert total(rows, "latency_seconds_count", model="m1") == 50
    assert fake_redis.hget(keys.metrics_latency("m1"), "0.5") == b"50"
    assert sum(int(v) for v in fake_redis.hgetall(keys.metrics_timeline(1_000_000 // 3600)).values()) == 50
    assert flusher.flush()  # nothing new: nothing written twice
    assert total(_counters(fake_redis), "jobs_total", model="m1") == 50


def test_a_failed_flush_keeps_its_counts_for_the_next(fake_redis: redis.Redis) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
    flusher = MetricsFlusher(down, every_s=60)
    flusher.add(_job())
    flusher.add(_job())
    assert not flusher.flush()
    flusher._redis = fake_redis  # Redis is back
    flusher.add(_job())
    assert flusher.flush()
    assert total(_counters(fake_redis), "jobs_total", model="m1") == 3


def test_close_writes_what_is_left(fake_redis: redis.Redis) -> None:
    flusher = MetricsFlusher(fake_redis, every_s=3600)
    flusher.start()
    flusher.add(_job())
    flusher.close()
    assert total(_counters(fake_redis), "jobs_total", model="m1") == 1
