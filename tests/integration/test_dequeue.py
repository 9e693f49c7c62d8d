"""The worker's dequeue keeps every job in a Redis list until it has started (real redis-server).

RQ 3.0's own multi-queue dequeue pops with LPOP: a worker killed right after the pop lost the job."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from genpool.shared import keys
from genpool.worker.pool import PoolWorker
from genpool.worker.rqcompat.dequeue import SafeDequeue
from tests.integration import rq_jobs

pytestmark = pytest.mark.integration


def _queues(conn: redis.Redis) -> list[Queue]:
    return [Queue(keys.queue_name(p), connection=conn, serializer=JSONSerializer) for p in keys.PRIORITIES]


def _push(queue: Queue, job_id: str) -> None:
    queue.connection.rpush(queue.key, job_id)


def test_pop_takes_priorities_in_order_and_parks_the_id_in_the_intermediate_list(real_redis) -> None:
    high, default, low = _queues(real_redis)
    _push(low, "job-low")
    _push(high, "job-high")
    dequeue = SafeDequeue(real_redis)
    assert [p[:2] for p in dequeue.pop([high, default, low], None)] == [(high.key, "job-high")]
    assert [p[:2] for p in dequeue.pop([high, default, low], None)] == [(low.key, "job-low")]
    assert dequeue.pop([high, default, low], None) == []
    # Popped but not started: still in a list a live worker scans, so a killed worker cannot lose them.
    assert high.intermediate_queue.get_job_ids() == ["job-high"]
    assert low.intermediate_queue.get_job_ids() == ["job-low"]


def test_pop_waits_for_a_job_on_any_queue(real_redis) -> None:
    high, default, low = _queues(real_redis)
    assert SafeDequeue(real_redis).pop([high, default, low], 0.3) == []
    _push(default, "job-default")
    assert [p[:2] for p in SafeDequeue(real_redis).pop([high, default, low], 0.3)] == [(default.key, "job-default")]


def test_pop_takes_several_jobs_in_priority_order_in_one_script_call(real_redis) -> None:
    """For a worker's free slots (#17): one round trip for all of them; given back in order at a stop."""
    high, default, low = _queues(real_redis)
    for name in ("d1", "d2", "d3"):
        _push(default, name)
    _push(low, "l1")
    _push(high, "h1")
    dequeue = SafeDequeue(real_redis)
    taken = dequeue.pop([high, default, low], None, count=4)
    assert [(p.queue_key, p.job_id) for p in taken] == [(high.key, "h1"), (default.key, "d1"), (default.key, "d2"),
                                                       (default.key, "d3")]
    assert default.intermediate_queue.get_job_ids() == ["d1", "d2", "d3"]
    dequeue.give_back(taken[2:])  # a stopping worker's jobs it had not started
    assert real_redis.lrange(default.key, 0, -1) == [b"d2", b"d3"]
    assert default.intermediate_queue.get_job_ids() == ["d1"]
    assert [p.job_id for p in dequeue.pop([high, default, low], None, count=10)] == ["d2", "d3", "l1"]


def test_pop_reads_the_jobs_hash_in_the_same_round_trip(real_redis) -> None:
    """RQ fetches the job (HGETALL) after its pop: here the dequeue script returns it (#17)."""
    high, default, low = _queues(real_redis)
    job = default.enqueue("genpool.worker.tasks.generate", {"v": 1})
    _push(default, "gone")  # an id whose job hash no longer exists
    dequeue = SafeDequeue(real_redis)
    (popped,) = dequeue.pop([high, default, low], None)
    assert popped.fields is not None
    assert (popped.queue_key, popped.job_id) == (default.key, job.id)
    assert popped.fields == real_redis.hgetall(job.key)
    assert dequeue.pop([high, default, low], None) == [(default.key, "gone", {})]


def test_a_worker_killed_after_the_pop_leaves_its_job_recoverable(real_redis) -> None:
    queues = _queues(real_redis)
    job = queues[2].enqueue("genpool.worker.tasks.generate", {"v": 1})
    dead = PoolWorker(queues, connection=real_redis, concurrency=1, heartbeat_s=1)
    job_back, queue = dead.dequeue_job_and_maintain_ttl(timeout=1)
    assert job_back.id == job.id and queue.name == queues[2].name
    # The worker dies here (before the job started): the id must still be somewhere a survivor looks.
    assert job.id in queues[2].intermediate_queue.get_job_ids()
    assert job.id not in queues[2].get_job_ids()


def test_a_killed_scheduler_holder_frees_the_lock_within_seconds(real_redis) -> None:
    queues = _queues(real_redis)
    holder = PoolWorker(queues, connection=real_redis, concurrency=1, heartbeat_s=1)
    holder._scheduler.tick()  # takes the scheduler locks, then is SIGKILLed: never refreshes them again
    ttl_s = holder.get_heartbeat_ttl(None)
    lock_ttls_s = [real_redis.ttl(holder._scheduler.lock_key(q.name)) for q in queues]
    assert all(0 < t <= ttl_s for t in lock_ttls_s), lock_ttls_s  # RQ's own: interval + 60 s
    survivor = PoolWorker(queues, connection=real_redis, concurrency=1, heartbeat_s=1)
    deadline = time.monotonic() + ttl_s + 3
    while not survivor._scheduler.acquired_locks and time.monotonic() < deadline:
        time.sleep(0.5)
        survivor._scheduler.tick()
    assert survivor._scheduler.acquired_locks == {q.name for q in queues}


def test_jobs_taken_for_the_free_slots_start_together_in_one_multi_and_all_run(real_redis) -> None:
    """One dequeue takes a job for every free slot; their starts are one MULTI (not one round trip each), and
    a stop right after runs them all: started jobs are never given back to their queue."""
    queue = Queue("takeall", connection=real_redis, serializer=JSONSerializer)
    jobs = [queue.enqueue(rq_jobs.quick, i) for i in range(6)]
    worker = PoolWorker([queue], connection=real_redis, concurrency=4, heartbeat_s=1, job_class=Job)
    worker._tick()  # the heartbeat and the scheduler duty now, not inside the dequeue counted below
    before = _calls(real_redis)
    first, _ = worker.dequeue_job_and_maintain_ttl(timeout=1)  # takes 4: this slot and 3 free ones
    made = _calls(real_redis) - before
    assert first.id == jobs[0].id
    assert made["exec"] == 1 and made["evalsha"] == 1, made  # the dequeue script, then one MULTI for 4 starts
    assert queue.intermediate_queue.get_job_ids() == []
    assert sorted(queue.started_job_registry.get_job_ids()) == sorted(j.id for j in jobs[:4])
    assert [j.get_status(refresh=True) for j in jobs[:4]] == [JobStatus.STARTED] * 4
    assert queue.get_job_ids() == [j.id for j in jobs[4:]]
    worker.teardown()  # a warm stop: what started runs, in its dequeue order
    assert [j.get_status(refresh=True) for j in jobs[:4]] == [JobStatus.FINISHED] * 4
    assert [j.return_value() for j in jobs[:4]] == [0, 1, 2, 3]
    assert queue.get_job_ids() == [j.id for j in jobs[4:]] and queue.started_job_registry.count == 0


def _calls(conn: redis.Redis) -> Counter[str]:
    stats = conn.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})


def test_a_job_hash_rq_cannot_read_leaves_the_jobs_taken_with_it_to_start_one_by_one(real_redis) -> None:
    """As before jobs started together: the readable ones run, the unreadable one fails its dequeue with its
    id, the ones not started yet go back to their queue at a stop."""
    queue = Queue("takeall-bad", connection=real_redis, serializer=JSONSerializer)
    jobs = [queue.enqueue(rq_jobs.quick, i) for i in range(3)]
    real_redis.hset(jobs[1].key, "created_at", "not a date")
    worker = PoolWorker([queue], connection=real_redis, concurrency=4, heartbeat_s=1, job_class=Job)
    first, _ = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert first.id == jobs[0].id and queue.started_job_registry.count == 0  # not started with the others
    worker.execute_job(first, queue)
    with pytest.raises(ValueError) as raised:
        worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert getattr(raised.value, "job_id", None) == jobs[1].id
    worker.teardown()
    assert jobs[0].get_status(refresh=True) == JobStatus.FINISHED
    assert queue.get_job_ids() == [jobs[2].id]  # given back, unstarted
    assert sum(worker._slots.acquire(blocking=False) for _ in range(5)) == 4  # no slot leaked
