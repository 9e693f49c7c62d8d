"""ResultStore.save with ``later``: the record's writes are queued for the job's end round trip (#17)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis

from genpool.shared import keys
from genpool.shared.jobs import ResultRecord
from genpool.shared.metrics import MetricsBatch
from genpool.worker.metricsflush import MetricsFlusher
from genpool.worker.results import ResultStore


def _store(conn: fakeredis.FakeRedis, flusher: MetricsFlusher | None) -> ResultStore:
    return ResultStore(conn, store=None, spool=None, prefix="genpool", result_ttl_s=60,  # type: ignore[arg-type]
                       metrics=flusher)


def test_a_record_saved_later_is_written_only_with_the_pipeline_it_is_queued_on() -> None:
    conn = fakeredis.FakeRedis()
    flusher = MetricsFlusher(conn)
    queued: list[tuple[Callable[[Any], None], Callable[[], None] | None]] = []
    metrics = MetricsBatch()
    metrics.inc("jobs_total", kind="text", status="finished")
    record = ResultRecord(id="a" * 32, status="finished", kind="text")
    _store(conn, flusher).save(record, metrics, notify="waiter", later=lambda w, a: queued.append((w, a)))
    flusher.flush()
    assert conn.get(keys.result(record.id)) is None and not conn.hgetall(keys.metrics_counters())  # nothing yet
    pipe = conn.pipeline()
    (write, after), = queued
    write(pipe)
    pipe.execute()
    assert after is not None
    after()
    assert ResultRecord.model_validate_json(conn.get(keys.result(record.id)) or b"") == record
    flusher.flush()
    assert conn.hgetall(keys.metrics_counters())  # counted once written


def test_a_record_saved_at_once_is_written_in_one_round_trip() -> None:
    conn = fakeredis.FakeRedis()
    record = ResultRecord(id="b" * 32, status="failed", kind="text")
    _store(conn, None).save(record, MetricsBatch())
    assert conn.get(keys.result(record.id)) is not None
