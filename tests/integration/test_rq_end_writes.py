"""A job's own writes ride its end (worker/rqcompat, ``GuardedJob.at_end``): genpool's result record goes in
the MULTI that marks the job finished instead of a round trip of its own (#17). Real redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from genpool.worker.rqcompat.job import GuardedJob
from tests.integration import rq_jobs
from tests.integration.test_rq_lifecycle_cost import round_trips  # noqa: F401 - the fixture
from tests.integration.test_rq_semantics import Worker

pytestmark = pytest.mark.integration
JOBS = 30


class EndJob(GuardedJob):
    """Runs the test's job functions by name (tests/integration/rq_jobs.py only)."""

    rq_result = False

    def resolve(self) -> Callable[..., Any]:
        return getattr(rq_jobs, str(self.func_name).rsplit(".", 1)[-1])  # type: ignore[no-any-return]


@pytest.fixture
def queue(real_redis: redis.Redis) -> Iterator[Queue]:
    rq_jobs.AFTER_END.clear()
    yield Queue("rqend", connection=real_redis, serializer=JSONSerializer, job_class=EndJob)


def _round_trips_per_job(queue: Queue, sent: list[int], func: Callable[..., Any], tag: str) -> float:
    jobs = [queue.enqueue(func, f"rqend:{tag}:{i}") for i in range(JOBS)]
    worker = Worker([queue], connection=queue.connection, job_class=EndJob, concurrency=1)
    before = sent[0]
    worker.work(burst=True)
    assert all(j.get_status(refresh=True) == JobStatus.FINISHED for j in jobs)
    return (sent[0] - before) / JOBS


def test_writes_queued_by_a_job_go_in_its_end_multi_with_no_round_trip_of_their_own(
        queue: Queue, round_trips: list[int]) -> None:  # noqa: F811 - the fixture
    plain = _round_trips_per_job(queue, round_trips, rq_jobs.quick, "plain")
    queued = _round_trips_per_job(queue, round_trips, rq_jobs.marks_at_end, "end")
    assert queued <= plain + 0.2, (plain, queued)  # a round trip of their own would be +1 a job
    keys = [f"rqend:end:{i}" for i in range(JOBS)]
    assert queue.connection.exists(*keys) == JOBS
    assert sorted(rq_jobs.AFTER_END) == sorted(keys)  # ``after`` ran once they were written


def test_a_job_that_fails_after_queueing_end_writes_still_writes_them(queue: Queue) -> None:
    job = queue.enqueue(rq_jobs.marks_then_fails, "rqend:failed")
    Worker([queue], connection=queue.connection, job_class=EndJob, concurrency=1).work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert queue.connection.get("rqend:failed") == b"1"
    assert rq_jobs.AFTER_END == ["rqend:failed"]


def test_an_end_multi_that_fails_still_writes_the_jobs_own_writes(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis drops the end MULTI (never sent): the job's record is written on its own, before RQ's failure
    path, not lost with the MULTI."""
    failed = []

    def drop(self: Worker, pipeline: Any = None) -> None:
        failed.append(True)
        raise redis.ConnectionError("dropped")

    monkeypatch.setattr(Worker, "increment_successful_job_count", drop)
    job = queue.enqueue(rq_jobs.marks_at_end, "rqend:dropped")
    Worker([queue], connection=queue.connection, job_class=EndJob, concurrency=1).work(burst=True)
    assert failed and job.get_status(refresh=True) == JobStatus.FAILED
    assert queue.connection.get("rqend:dropped") == b"1"
    assert rq_jobs.AFTER_END == ["rqend:dropped"]
