"""The worker: an RQ worker that runs many jobs at once in one process, and the processes that run it.

Why threads in an RQ ``SimpleWorker``: a Gemini call spends seconds waiting on the network and ~2 ms of
CPU. RQ runs one job per process, and a process with google-genai + boto3 is ~75 MB, so 130 calls in
flight as processes need 6-10 GiB. Here one process holds ``concurrency`` calls in flight on one shared
google-genai Client, boto3 client and Redis pool; the main thread does RQ's part (dequeue, heartbeats,
maintenance, scheduling). No fork per job (RQ's forking Worker costs ~11 ms CPU a job vs ~1.5 ms).
Everything else is RQ's own: queues, registries, job statuses, `rq info`, rq-dashboard.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker.base import WorkerStatus

from genpool.shared import keys
from genpool.shared.errors import Deferred
from genpool.worker.abandoned import record_abandoned
from genpool.worker.dequeue import SafeDequeue
from genpool.worker.jobguard import GenpoolJob, record_refusal
from genpool.worker.runner import JobFailed

log = logging.getLogger("genpool.worker")


class NoDeathPenalty(BaseDeathPenalty):
    """RQ's SIGALRM timeout works only in the main thread; genpool bounds every call itself instead
    (Gemini call timeout, per-job deadline, S3 and Redis socket timeouts)."""

    def setup_death_penalty(self) -> None:
        return None

    def cancel_death_penalty(self) -> None:
        return None


class PoolWorker(SimpleWorker):
    death_penalty_class = NoDeathPenalty

    def __init__(self, *args: Any, concurrency: int = 64, heartbeat_s: float = 5.0, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("job_class", GenpoolJob)  # runs only genpool's entry point (worker/jobguard.py)
        kwargs.setdefault("exception_handlers", [record_refusal, record_abandoned])
        kwargs.setdefault("maintenance_interval", max(2, int(heartbeat_s)))
        self.concurrency = concurrency
        self.heartbeat_s = heartbeat_s
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="genpool-job")
        self._inflight: dict[str, tuple[Job, Execution]] = {}
        self._inflight_lock = threading.Lock()
        self._last_tick = 0.0
        self._safe_dequeue = SafeDequeue(self.connection)
        self._scheduler = RQScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                      name=f"{self.name}-scheduler")
        self.on_tick: list[Any] = []

    # --- RQ hooks --------------------------------------------------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        return max(1, int(self.heartbeat_s))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Short: a job whose worker was killed is found abandoned within seconds, not minutes."""
        return int(self.heartbeat_s * 3) + 2

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        with self._inflight_lock:
            self._inflight[job.id] = (job, execution)
        self._executor.submit(self._perform, job, queue, execution)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while not self._slots.acquire(timeout=self.heartbeat_s):
            self._tick()
        try:
            result = self._dequeue(timeout)
        except BaseException:
            self._slots.release()
            raise
        if result is None:
            self._slots.release()
        return result

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        # RQ leaves the job in the intermediate list when a worker listens on several queues, and then
        # "cleans" finished jobs from it a minute later; genpool always removes it once the job started.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def clean_registries(self) -> None:
        super().clean_registries()
        for queue in self.queues:
            self._recover_intermediate(queue)

    def _recover_intermediate(self, queue: Queue) -> None:
        """Jobs a killed worker had dequeued but not started: requeue them after a few heartbeats
        (RQ's own rule waits a minute)."""
        stuck_after_s = self.get_heartbeat_ttl(None)  # type: ignore[arg-type]
        intermediate = queue.intermediate_queue
        for job_id in intermediate.get_job_ids():
            if job_id in self._inflight or job_id in queue.started_job_registry:
                continue
            job = queue.fetch_job(job_id)
            if job is None or job.get_status(refresh=False) in (JobStatus.FINISHED, JobStatus.FAILED):
                intermediate.remove(job_id)
                continue
            first = intermediate.get_first_seen(job_id)
            if first is None:
                intermediate.set_first_seen(job_id)
            elif (now() - first).total_seconds() > stuck_after_s:
                log.warning("job %s was dequeued by a worker that died before starting it: requeued", job_id)
                self.handle_job_failure(job, queue, exc_string="dequeued by a worker that died before starting it")
                intermediate.remove(job_id)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: Any) -> None:
        exc = exc_info[1]
        if isinstance(exc, Deferred):
            self._defer(job, queue, execution, exc.delay_s)
            return
        if isinstance(exc, JobFailed):
            job.retries_left = 0  # a terminal genpool failure: RQ's Retry is only for worker deaths
        super()._finalize_failure(job, queue, execution, exc_info)

    def teardown(self) -> None:
        """Warm shutdown: let in-flight jobs finish (heartbeats continue meanwhile)."""
        while self._inflight:
            self._tick()
            time.sleep(0.05)
        self._executor.shutdown(wait=True)
        self._scheduler.release_locks()
        super().teardown()

    # --- genpool's additions ---------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def _perform(self, job: Job, queue: Queue, execution: Execution) -> None:
        try:
            self.perform_job(job, queue, execution)
        except BaseException:  # noqa: BLE001 - a job thread must never take the worker down
            log.exception("job %s: unexpected error outside the job", job.id)
        finally:
            with self._inflight_lock:
                self._inflight.pop(job.id, None)
                idle = not self._inflight
            if idle:
                self._set_idle()
            self._slots.release()

    def _set_idle(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.set_state(WorkerStatus.IDLE)

    def _dequeue(self, timeout: int | None) -> Any:
        backoff_s = 1.0
        while True:
            self._tick()
            if self._stop_requested:
                return None
            try:
                hit = self._safe_dequeue.pop(self._ordered_queues, None if timeout is None else self.dequeue_timeout)
                if hit is None and timeout is None:
                    return None  # burst mode: every queue is empty
                result = None if hit is None else self.queue_class._fetch_dequeued_job(
                    self.connection, *hit, job_class=self.job_class, serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class)
                if result is None:
                    continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.error("cannot reach Redis (%s); retrying in %.0f s", exc, backoff_s)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)
                continue
            if result is not None:
                self.reorder_queues(reference_queue=result[1])
            return result

    def _tick(self) -> None:
        """Heartbeats for the worker and every in-flight job, maintenance, scheduling: every heartbeat_s."""
        if time.monotonic() - self._last_tick < self.heartbeat_s:
            return
        self._last_tick = time.monotonic()
        try:
            self.heartbeat()
            self._beat_inflight()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            self._schedule()
            for hook in self.on_tick:
                hook()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.error("heartbeat failed, Redis unreachable: %s", exc)

    def _beat_inflight(self) -> None:
        with self._inflight_lock:
            inflight = list(self._inflight.values())
        if not inflight:
            return
        ttl = self.get_heartbeat_ttl(inflight[0][0])
        with self.connection.pipeline() as pipe:
            for job, execution in inflight:
                execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
                job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
            pipe.execute()

    def _schedule(self) -> None:
        """Run RQ's scheduler duty in this thread (no forked scheduler process): move due deferred jobs."""
        scheduler = self._scheduler
        if scheduler.acquired_locks != scheduler._queue_names:
            scheduler.acquire_locks()
        if scheduler.acquired_locks:
            scheduler.heartbeat()
            self._shorten_scheduler_locks()
            scheduler.enqueue_scheduled_jobs()

    def _shorten_scheduler_locks(self) -> None:
        """RQ keeps its scheduler lock for interval + 60 s, so a worker SIGKILLed while holding it would hold
        back every deferred job for a minute. The holder refreshes the lock every tick: a few heartbeats of
        TTL are enough, like a job's (we own the lock: RQ refreshed it just now)."""
        ttl_s = self.get_heartbeat_ttl(None)  # type: ignore[arg-type]
        with self.connection.pipeline() as pipe:
            for name in self._scheduler.acquired_locks:
                pipe.expire(self._scheduler.get_locking_key(name), ttl_s)
            pipe.execute()

    def _defer(self, job: Job, queue: Queue, execution: Execution, delay_s: float) -> None:
        log.info("job %s: no model can take it soon; back on the queue in %.1f s", job.id, delay_s)
        with self.connection.pipeline() as pipe:
            queue.schedule_job(job, now() + timedelta(seconds=delay_s), pipeline=pipe)
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()


def queues_for(connection: redis.Redis) -> list[Queue]:
    return [Queue(keys.queue_name(p), connection=connection, serializer=JSONSerializer) for p in keys.PRIORITIES]
