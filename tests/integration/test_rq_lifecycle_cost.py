"""RQ's per-job bookkeeping on genpool's worker (#17, worker/rqcompat/lean.py): fewer Redis commands per
job, and what RQ's users read is unchanged: statuses, the finished / failed / started registries, results,
the worker's statistics and state (`rq info`, rq-dashboard). Real redis-server, counted with commandstats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from redis.connection import Connection
from rq import Queue
from rq import Worker as RQWorker
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from tests.integration import rq_jobs
from tests.integration.test_rq_semantics import ThreadSafeWorker, Worker, run_in_thread

pytestmark = pytest.mark.integration
JOBS = 60


@pytest.fixture
def queue(real_redis: redis.Redis) -> Queue:
    return Queue("rqcost", connection=real_redis, serializer=JSONSerializer)


def _calls(conn: redis.Redis) -> Counter[str]:
    stats = conn.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Requests this process sends to Redis (a pipeline, a MULTI or a script is one)."""
    sent = [0]
    original = Connection.send_packed_command

    def counting(self: Connection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    yield sent


def test_rqs_lifecycle_costs_fewer_commands_and_keeps_its_semantics(queue: Queue, round_trips: list[int]) -> None:
    conn = queue.connection
    jobs = [queue.enqueue(rq_jobs.quick, i) for i in range(JOBS)]
    failing = queue.enqueue(rq_jobs.slow, "not a number")  # raises TypeError: the failed path
    worker = Worker([queue], connection=conn, concurrency=8)
    before, sent_before = _calls(conn), round_trips[0]
    worker.work(burst=True)
    per_job = {name: n / (JOBS + 1) for name, n in (_calls(conn) - before).items()}
    # RQ 3.0's own worker: ~13 EXPIRE, ~13 HSET, 4 MULTI / EXEC a job; heartbeats by time, one start MULTI
    assert per_job.get("expire", 0) <= 6.5, per_job  # and no EXPIRE of a dependencies key that does not exist
    assert per_job.get("hset", 0) <= 5, per_job  # 3 a job, and the busy / idle state when the worker idles
    assert per_job.get("multi", 0) <= 2.5, per_job
    assert per_job.get("exists", 0) <= 0.5, per_job  # `rq suspend` checked by time, not before every job
    # A job's end in one MULTI (RQ: WATCH and SMEMBERS of its dependents before it), the job's hash read by
    # the dequeue script: dequeue, start, end (RQ: dequeue, fetch, start, WATCH, SMEMBERS, end), and the
    # idle state when the worker runs dry between two jobs (~7.4 a job before, ~4.7 now)
    assert per_job.get("watch", 0) <= 0.1 and per_job.get("smembers", 0) <= 0.1, per_job
    assert (round_trips[0] - sent_before) / (JOBS + 1) <= 5.7, round_trips[0] - sent_before
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


def test_a_dependent_enqueued_while_its_parent_runs_runs_once_the_parent_finishes(queue: Queue) -> None:
    """The parent's end finds its dependents without RQ's WATCH / SMEMBERS (worker/rqcompat/lean.py)."""
    rq_jobs.RELEASE.clear()
    rq_jobs.STARTED.clear()
    parent = queue.enqueue(rq_jobs.held_job)
    worker = ThreadSafeWorker([queue], connection=queue.connection)
    thread = run_in_thread(worker, burst=True)
    try:
        assert rq_jobs.STARTED.wait(10)
        children = [queue.enqueue(rq_jobs.quick, i, depends_on=parent) for i in range(3)]
        assert all(c.get_status() == JobStatus.DEFERRED for c in children)
    finally:
        rq_jobs.RELEASE.set()
    thread.join(20)
    worker._stop_requested = True
    assert parent.get_status(refresh=True) == JobStatus.FINISHED
    assert [c.get_status(refresh=True) for c in children] == [JobStatus.FINISHED] * 3
    assert [c.return_value() for c in children] == [0, 1, 2]
    assert queue.connection.ttl(parent.dependents_key) != -1  # moved (gone) or expiring with the result, never kept
    assert 0 < queue.connection.ttl(children[0].dependencies_key) <= 500


def test_a_dependent_enqueued_after_its_parent_finished_is_queued_at_once(queue: Queue) -> None:
    parent = queue.enqueue(rq_jobs.quick, 1)
    Worker([queue], connection=queue.connection).work(burst=True)
    child = queue.enqueue(rq_jobs.quick, 2, depends_on=parent)
    assert child.get_status() == JobStatus.QUEUED
    assert queue.connection.exists(parent.dependents_key) == 0
    Worker([queue], connection=queue.connection).work(burst=True)
    assert child.return_value() == 2
