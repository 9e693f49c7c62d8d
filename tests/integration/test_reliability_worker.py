"""A job whose worker dies on every try (SIGKILL, OOM, lost host) still ends with a result record: RQ
gives up on it after its retries without running genpool code, and genpool records the failure, so the
producer's handle does not wait forever."""

from __future__ import annotations

import time

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from genpool.shared.contract import ABANDONED_RETRIES

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(120)]

MODELS = ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite")


def _wait_started(stack, job_id: str, after: object, timeout_s: float) -> object | None:
    """Wait for a new start of the job (its started_at differs from ``after``); None if it ended instead."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = Job.fetch(job_id, connection=stack.redis, serializer=JSONSerializer)
        if job.get_status() == JobStatus.STARTED and job.started_at != after:
            return job.started_at
        if stack.pool.handle(job_id).result() is not None:
            return None
        time.sleep(0.05)
    return None


def test_a_job_whose_worker_always_dies_ends_failed_with_a_record(stack):
    stack.sim.models({m: {"latency_ms": 60_000, "jitter_ms": 0} for m in MODELS})  # never answers in time
    stack.workers.start(1, concurrency=2)
    handle = stack.pool.submit({"kind": "text", "prompt": "this job's worker always dies"})
    kills, started_at = 0, None
    while kills <= ABANDONED_RETRIES and (started_at := _wait_started(stack, handle.id, started_at, 30)):
        stack.workers.kill(len(stack.workers.procs) - 1)
        kills += 1
        stack.workers.start(1, concurrency=2)  # the replacement a supervisor would start
    record = handle.wait(timeout_s=30)
    assert kills == ABANDONED_RETRIES + 1
    assert record.status == "failed"
    assert record.error.type == "abandoned"
    assert handle.status() == "failed"
