"""RQ's per-job bookkeeping on genpool's worker (#17, worker/rqcompat/lean.py): fewer Redis commands per
job, and what RQ's users read is unchanged: statuses, the finished / failed / started registries, results,
the worker's statistics and state (`rq info`, rq-dashboard). Real redis-server, counted with commandstats."""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from rq import Queue
from rq import Worker as RQWorker
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from tests.integration import rq_jobs
from tests.integration.test_rq_semantics import Worker

pytestmark = pytest.mark.integration
JOBS = 60


@pytest.fixture
def queue(real_redis: redis.Redis) -> Queue:
    return Queue("rqcost", connection=real_redis, serializer=JSONSerializer)


def _calls(conn: redis.Redis) -> Counter[str]:
    stats = conn.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})


def test_rqs_lifecycle_costs_fewer_commands_and_keeps_its_semantics(queue: Queue) -> None:
    conn = queue.connection
    jobs = [queue.enqueue(rq_jobs.quick, i) for i in range(JOBS)]
    failing = queue.enqueue(rq_jobs.slow, "not a number")  # raises TypeError: the failed path
    worker = Worker([queue], connection=conn, concurrency=8)
    before = _calls(conn)
    worker.work(burst=True)
    per_job = {name: n / (JOBS + 1) for name, n in (_calls(conn) - before).items()}
    # RQ 3.0's own worker: ~13 EXPIRE, ~13 HSET, 4 MULTI / EXEC a job; heartbeats by time, one start MULTI
    assert per_job.get("expire", 0) <= 8, per_job
    assert per_job.get("hset", 0) <= 6, per_job
    assert per_job.get("multi", 0) <= 2.5, per_job
    assert per_job.get("exists", 0) <= 0.5, per_job  # `rq suspend` checked by time, not before every job
    assert all(j.get_status(refresh=True) == JobStatus.FINISHED for j in jobs)
    assert [j.return_value() for j in jobs] == list(range(JOBS))
    assert failing.get_status(refresh=True) == JobStatus.FAILED
    assert sorted(queue.finished_job_registry.get_job_ids()) == sorted(j.id for j in jobs)
    assert queue.failed_job_registry.get_job_ids() == [failing.id]
    assert queue.started_job_registry.get_job_ids() == []
    seen = RQWorker.find_by_key(worker.key, connection=conn)  # what `rq info` and rq-dashboard read
    assert seen is not None
    assert (seen.successful_job_count, seen.failed_job_count) == (JOBS, 1)
    assert seen.total_working_time > 0
    assert seen.get_state() == "idle"


def test_rq_suspend_still_stops_a_burst_worker(queue: Queue) -> None:
    job = queue.enqueue(rq_jobs.quick, 1)
    suspend(queue.connection)
    try:
        Worker([queue], connection=queue.connection).work(burst=True)
        assert job.get_status(refresh=True) == JobStatus.QUEUED
    finally:
        resume(queue.connection)
