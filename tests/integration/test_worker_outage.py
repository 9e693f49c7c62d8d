"""A worker rides out a Redis outage that hits RQ's own loop: the calls RQ makes outside the dequeue
(suspension check, maintenance, heartbeat, starting a job it just dequeued) no longer end work()
(real redis-server, stopped and restarted)."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from genpool.devstack import services
from tests.integration import rq_jobs
from tests.integration.test_rq_semantics import ThreadSafeWorker

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_a_job_dequeued_just_before_redis_went_away_is_kept_and_the_worker_goes_on(
        redis_service: services.Service, real_redis: redis.Redis) -> None:
    queue = Queue("outage", connection=real_redis, serializer=JSONSerializer)
    job = queue.enqueue(rq_jobs.quick, 1)
    worker = ThreadSafeWorker([queue], connection=real_redis)
    worker.bootstrap()
    dequeued = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert dequeued is not None and dequeued[0].id == job.id
    redis_service.stop()
    try:
        worker.execute_job(*dequeued)  # raised ConnectionError into RQ's loop, which then quit
        worker.check_for_suspension(False)
        worker.run_maintenance_tasks()
        worker.heartbeat()
    finally:
        redis_service.restart()
    assert worker._slots.acquire(blocking=False)  # the job's slot was given back
    assert job.id in queue.intermediate_queue.get_job_ids()  # where the recovery finds it once Redis is back
