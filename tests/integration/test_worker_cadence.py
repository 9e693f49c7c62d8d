"""The worker's own cadences: a job deferred until its model's window has room moves back to its queue
within the scheduler's half-second cadence, not a heartbeat later (real redis-server)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from genpool.worker.rqcompat.worker import SCHEDULE_EVERY_S
from tests.integration.test_rq_semantics import ThreadSafeWorker, run_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(real_redis: redis.Redis) -> Iterator[Queue]:
    yield Queue("cadence", connection=real_redis, serializer=JSONSerializer)


def test_the_scheduler_duty_runs_every_half_second_whatever_the_heartbeat(queue: Queue) -> None:
    worker = ThreadSafeWorker([queue], connection=queue.connection, heartbeat_s=5)
    ticks: list[float] = []
    duty = worker._scheduler
    original = duty.tick

    def counted() -> None:
        ticks.append(time.monotonic())
        original()

    duty.tick = counted  # type: ignore[method-assign]
    thread = run_in_thread(worker)
    time.sleep(3.0)
    worker._stop_requested = True
    thread.join(10)
    # A 5 s heartbeat ran the duty once in these 3 s (a deferred job came back up to 5 s late).
    assert len(ticks) >= 3.0 / SCHEDULE_EVERY_S - 2, ticks
