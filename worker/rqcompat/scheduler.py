"""RQ's scheduler duty run from the worker's own thread (no forked scheduler process), with short locks."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import Serializer
from rq.utils import current_timestamp


def reschedule_now(connection: Redis, jobs: Iterable[tuple[str, str]]) -> int:
    """Jobs (queue name, job id) waiting in RQ's scheduled registries become due now; a job no longer
    scheduled is left alone. Returns how many moved (the scheduler duty enqueues them within its tick)."""
    now_ts = current_timestamp()
    pipe = connection.pipeline(transaction=False)
    for queue_name, job_id in jobs:
        pipe.zadd(ScheduledJobRegistry(queue_name, connection=connection).key, {job_id: now_ts}, xx=True, ch=True)
    return sum(int(n) for n in pipe.execute())


class SchedulerDuty:
    """Moves due deferred / scheduled jobs to their queues whenever this worker holds the queues' locks.

    RQ keeps its scheduler lock for interval + 60 s, so a worker SIGKILLed while holding it would hold back
    every deferred job for a minute. The holder refreshes its locks every tick, so ``lock_ttl_s`` (a few
    heartbeats) is enough."""

    def __init__(self, queues: list[Queue], connection: Redis, serializer: Serializer, name: str,
                 lock_ttl_s: int) -> None:
        # RQScheduler sets its logger to INFO by default ("Acquired scheduler lock ..." on every takeover).
        self._scheduler = RQScheduler(queues, connection=connection, serializer=serializer, name=name,
                                      logging_level=max(logging.WARNING, logging.getLogger().level))
        self._connection = connection
        self._lock_ttl_s = lock_ttl_s

    def tick(self) -> None:
        scheduler = self._scheduler
        if scheduler.acquired_locks != scheduler._queue_names:
            scheduler.acquire_locks()
        if scheduler.acquired_locks:
            scheduler.heartbeat()
            self._shorten_locks()
            scheduler.enqueue_scheduled_jobs()

    @property
    def acquired_locks(self) -> set[str]:
        return set(self._scheduler.acquired_locks)

    def lock_key(self, queue_name: str) -> str:
        return str(self._scheduler.get_locking_key(queue_name))

    def release(self) -> None:
        self._scheduler.release_locks()

    def _shorten_locks(self) -> None:
        # We own the locks: RQ refreshed them just now.
        with self._connection.pipeline() as pipe:
            for name in self._scheduler.acquired_locks:
                pipe.expire(self._scheduler.get_locking_key(name), self._lock_ttl_s)
            pipe.execute()
