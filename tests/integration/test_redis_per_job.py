"""Redis work per job on the real stack (#17): counted with INFO commandstats on the real redis-server
around a batch of text jobs, so everything every client sends is counted. Counts, not timings; the bounds
are generous (idle heartbeats and polling land in the same window)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import redis

from genpool.shared import keys
from genpool.shared.metrics import read_counters, total

pytestmark = pytest.mark.integration
JOBS = 120


def _calls(conn: redis.Redis) -> Counter[str]:
    stats = conn.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})


def _run_batch(stack: Any, count: int, tag: str) -> Counter[str]:
    before = _calls(stack.redis)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"{tag} {i}"} for i in range(count)])
    records = stack.pool.wait_all(handles, timeout_s=120)
    delta = _calls(stack.redis) - before
    assert all(r is not None and r.status == "finished" for r in records), records
    return delta


def _jobs_total(conn: redis.Redis) -> float:
    return total(read_counters(conn.hgetall(keys.metrics_counters())), "jobs_total", status="finished")


def test_genpool_own_commands_per_job_are_few(stack: Any) -> None:
    """Metrics summed per process (not ~16 HINCRBY(FLOAT)s a job); no result GET, route pin SET / GET / DEL
    for a job that never ran before; the counters still reach the hash `genpool stats` reads."""
    stack.env["GENPOOL_METRICS_FLUSH_S"] = "1"  # the default (the stack fixture writes them per job)
    stack.workers.start(1, concurrency=16)
    _run_batch(stack, 20, "warm")
    delta = _run_batch(stack, JOBS, "count")
    per_job = {name: n / JOBS for name, n in delta.items()}
    metrics = per_job.get("hincrby", 0) + per_job.get("hincrbyfloat", 0)
    assert metrics <= 5, per_job  # RQ's own worker stats are 2 a job; genpool's were ~16
    assert per_job.get("get", 0) <= 2.5, per_job  # the limiter script's window reads; no result GET (a first run)
    assert per_job.get("del", 0) <= 1.2, per_job  # RQ's own DEL; no route pin to drop
    assert per_job.get("set", 0) <= 2.5, per_job  # the record (and the window in the limiter script)
    # RQ's lifecycle (worker/rqcompat/lean.py): no result stream for a genpool job (XADD + EXPIRE), its end
    # in one MULTI (no WATCH / SMEMBERS before it)
    assert per_job.get("xadd", 0) <= 0.2 and per_job.get("watch", 0) <= 0.1, per_job
    assert per_job.get("smembers", 0) <= 0.1, per_job
    deadline = time.monotonic() + 30
    while _jobs_total(stack.redis) < JOBS + 20 and time.monotonic() < deadline:
        time.sleep(0.2)  # written about once a second by the worker, not with each record
    assert _jobs_total(stack.redis) == JOBS + 20


def test_metrics_of_the_last_jobs_are_written_when_the_worker_stops(stack: Any) -> None:
    stack.env["GENPOOL_METRICS_FLUSH_S"] = "3600"  # only the stop can write them
    stack.workers.start(1, concurrency=4)
    _run_batch(stack, 5, "last")
    assert _jobs_total(stack.redis) == 0
    stack.workers.stop()
    assert _jobs_total(stack.redis) == 5


def test_a_genpool_jobs_end_writes_what_changed_and_no_rq_result(stack: Any) -> None:
    """Its result is genpool's record: no RQ result stream; its hash keeps the payload it was enqueued with."""
    stack.workers.start(1, concurrency=2)
    handle = stack.pool.submit({"kind": "text", "prompt": "the end of a job"})
    enqueued = stack.redis.hgetall(f"rq:job:{handle.id}")
    assert handle.wait(timeout_s=60).status == "finished"
    ended = stack.redis.hgetall(f"rq:job:{handle.id}")
    assert ended[b"status"] == b"finished" and ended[b"ended_at"] and ended[b"started_at"]
    assert ended[b"data"] == enqueued[b"data"] and ended[b"origin"] == enqueued[b"origin"]
    assert stack.redis.exists(f"rq:results:{handle.id}") == 0
    assert stack.redis.ttl(f"rq:job:{handle.id}") > 0  # kept as long as RQ's result_ttl says
