"""The threaded worker keeps RQ's semantics where RQ's own code assumes one job at a time (real redis-server).

Each test fails on the worker before genpool.worker.rqcompat: burst returned with jobs in flight,
max_idle_time was ignored, a second work() hung, the in-flight heartbeat recreated a deleted job hash,
intermediate-list recovery ran without RQ's maintenance lock, a subclass's job_class was overridden, and a
cold shutdown during the warm wait never recorded the worker's death.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker_registration import get_keys

from genpool.worker.jobguard import GenpoolJob
from genpool.worker.pool import PoolWorker
from tests.integration import rq_jobs

pytestmark = pytest.mark.integration


class Worker(PoolWorker):
    """genpool's worker running ordinary RQ jobs (RQ's job class), so RQ's semantics can be watched."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_class", Job)
        kwargs.setdefault("concurrency", 4)
        kwargs.setdefault("heartbeat_s", 1)
        super().__init__(*args, **kwargs)


class ThreadSafeWorker(Worker):
    """work() off the main thread: signal handlers can only be installed on the main thread."""

    def _install_signal_handlers(self) -> None:
        return None


@pytest.fixture
def queue(real_redis: redis.Redis) -> Iterator[Queue]:
    rq_jobs.RELEASE.clear()
    rq_jobs.STARTED.clear()
    yield Queue("rqsem", connection=real_redis, serializer=JSONSerializer)
    rq_jobs.RELEASE.set()


def run_in_thread(worker: Worker, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=worker.work, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def test_burst_returns_only_after_the_jobs_in_flight_and_their_dependents(queue: Queue) -> None:
    first = queue.enqueue(rq_jobs.slow, 0.5)
    dependent = queue.enqueue(rq_jobs.quick, 2, depends_on=first)
    Worker([queue], connection=queue.connection).work(burst=True)
    assert first.get_status() == JobStatus.FINISHED
    assert dependent.get_status() == JobStatus.FINISHED  # was left queued: burst quit with `first` in flight


def test_max_idle_time_ends_an_idle_worker(queue: Queue) -> None:
    worker = ThreadSafeWorker([queue], connection=queue.connection)
    started = time.monotonic()
    thread = run_in_thread(worker, max_idle_time=2)
    thread.join(10)
    worker._stop_requested = True  # ends the old worker, which ignored max_idle_time
    thread.join(5)
    assert 1.5 <= time.monotonic() - started <= 6


def test_max_idle_time_counts_from_the_last_job_in_flight(queue: Queue) -> None:
    job = queue.enqueue(rq_jobs.slow, 3)
    worker = ThreadSafeWorker([queue], connection=queue.connection)
    thread = run_in_thread(worker, max_idle_time=1)
    thread.join(15)
    worker._stop_requested = True
    assert job.get_status() == JobStatus.FINISHED


def test_a_second_work_call_runs_jobs_again(queue: Queue) -> None:
    worker = ThreadSafeWorker([queue], connection=queue.connection)
    first = queue.enqueue(rq_jobs.quick, 1)
    worker.work(burst=True)
    second = queue.enqueue(rq_jobs.quick, 2)
    thread = run_in_thread(worker, burst=True)
    thread.join(10)
    worker._stop_requested = True
    assert (first.get_status(), second.get_status()) == (JobStatus.FINISHED, JobStatus.FINISHED)


def test_the_inflight_heartbeat_does_not_recreate_a_deleted_job(queue: Queue) -> None:
    job = queue.enqueue(rq_jobs.held_job)
    worker = ThreadSafeWorker([queue], connection=queue.connection)
    thread = run_in_thread(worker, burst=True)
    assert rq_jobs.STARTED.wait(10)
    queue.connection.delete(job.key)  # e.g. deleted by an operator while it runs
    time.sleep(2.5)  # two heartbeats of the jobs in flight
    leftover = queue.connection.exists(job.key)
    rq_jobs.RELEASE.set()
    thread.join(10)
    assert leftover == 0


def _stuck_in_intermediate(queue: Queue) -> Job:
    """A job a dead worker dequeued but never started, first seen long ago."""
    job = queue.enqueue(rq_jobs.quick, 1, retry=None)
    job.retries_left = 3
    job.save()
    queue.connection.lmove(queue.key, queue.intermediate_queue.key, "LEFT", "RIGHT")
    seen = (now() - timedelta(seconds=300)).timestamp()
    queue.connection.set(queue.intermediate_queue.get_first_seen_key(job.id), seen)
    return job


def test_intermediate_recovery_waits_for_rqs_maintenance_lock(queue: Queue) -> None:
    job = _stuck_in_intermediate(queue)
    assert queue.acquire_maintenance_lock()  # another worker is cleaning this queue right now
    Worker([queue], connection=queue.connection).clean_registries()
    assert queue.intermediate_queue.get_job_ids() == [job.id]  # left to the lock holder
    queue.release_maintenance_lock()


def test_two_workers_cleaning_in_turn_requeue_a_stuck_job_once(queue: Queue) -> None:
    job = _stuck_in_intermediate(queue)
    for _ in range(2):
        Worker([queue], connection=queue.connection).clean_registries()
    assert queue.intermediate_queue.get_job_ids() == []
    assert queue.job_ids == [job.id]
    assert queue.fetch_job(job.id).retries_left == 2  # requeued once: one retry spent, not two


def test_a_subclass_job_class_is_kept(real_redis: redis.Redis) -> None:
    class MyJob(GenpoolJob):
        pass

    class MyWorker(PoolWorker):
        job_class = MyJob

    assert MyWorker([Queue("q", connection=real_redis)], connection=real_redis).job_class is MyJob
    assert PoolWorker([Queue("q", connection=real_redis)], connection=real_redis).job_class is GenpoolJob


@pytest.fixture
def own_signal_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_cold_shutdown_records_the_workers_death(queue: Queue, own_signal_handlers: None) -> None:
    queue.enqueue(rq_jobs.held_job)
    worker = Worker([queue], connection=queue.connection)

    def signals() -> None:
        if not rq_jobs.STARTED.wait(10):  # never signal this process unless the worker's handlers are in
            worker._stop_requested = True
            return
        os.kill(os.getpid(), signal.SIGTERM)  # warm: the worker waits for its job in flight
        time.sleep(1.5)  # RQ ignores a second signal within 1 s
        os.kill(os.getpid(), signal.SIGTERM)  # cold, while it waits
        time.sleep(3)
        rq_jobs.RELEASE.set()  # lets the old worker's wait end too

    sender = threading.Thread(target=signals, daemon=True)
    sender.start()
    with pytest.raises(SystemExit):
        worker.work()
    registered = worker.key.encode() in {k.encode() if isinstance(k, str) else k for k in get_keys(queue)}
    death = queue.connection.hget(worker.key, "death")
    rq_jobs.RELEASE.set()
    sender.join(10)
    assert worker.cold_shutdown
    assert death is not None and not registered
