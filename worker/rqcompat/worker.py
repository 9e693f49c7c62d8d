"""An RQ ``SimpleWorker`` that runs many jobs at once on threads: the RQ half of genpool's worker.

The main thread does RQ's part: dequeue (atomically into the intermediate list), worker and job
heartbeats, registry maintenance, the scheduler duty. Each job runs on one of ``concurrency`` threads.
Everything else keeps RQ's semantics; where RQ's code assumes one job at a time, it is overridden here:
- ``work(burst=True)`` returns only once the queues are empty *and* no job is in flight (a finishing job
  may enqueue its dependents or an immediate retry);
- ``max_idle_time``: the worker quits after that long with nothing in flight and nothing queued;
- ``work()`` may be called again after it returned (the thread pool is made per run);
- the in-flight heartbeat deletes a job hash it recreated (the job was deleted meanwhile), as RQ's own
  ``maintain_heartbeats`` does;
- dead workers' dequeued-but-never-started jobs are requeued under RQ's per-queue maintenance lock;
- one dequeue takes a job for every free slot (in priority order, RQ's default strategy; up to
  ``PREFETCH_MAX`` more; one round trip, each job's hash read with it), and they start together: one
  MULTI for all their starts (RQ: one per job), then each runs on its slot (``execute_job`` is still called
  once per job). A stop right after runs them: a started job is never given back to its queue;
- a cold shutdown (second SIGTERM / SIGINT) records the worker's death at once instead of waiting for the
  jobs in flight (threads cannot be killed like a work horse; ``cold_shutdown`` tells the caller to exit).
RQ's SIGALRM job timeout works only in the main thread, so jobs are not timed out here (``NoDeathPenalty``):
the code a job runs bounds its own calls.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import FrameType
from typing import Any

import redis
from rq import Queue, worker_registration
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.job_lifecycle import call_exception_handlers
from rq.registry import clean_registries
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker.base import DequeueStrategy, WorkerStatus

from genpool.worker.rqcompat.dequeue import Popped, SafeDequeue
from genpool.worker.rqcompat.job import GuardedJob
from genpool.worker.rqcompat.lean import LeanWorker
from genpool.worker.rqcompat.scheduler import SchedulerDuty

log = logging.getLogger("genpool.worker")
Dequeued = tuple[Job, Queue]


_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

#: At most this many jobs more than the one asked for are taken in one dequeue, for slots already free
#: (one round trip for all; they start as the main thread loops, before it waits again).
PREFETCH_MAX = 16

#: How often the scheduler duty runs: RQ stores a deferred job's due time in whole seconds, and a job
#: the limiter deferred to the moment its model's window has room should not wait a heartbeat more.
SCHEDULE_EVERY_S = 0.5

class NoDeathPenalty(BaseDeathPenalty):
    """RQ's SIGALRM timeout works only in the main thread; the job's own code bounds its calls instead."""

    def setup_death_penalty(self) -> None:
        return None

    def cancel_death_penalty(self) -> None:
        return None


class ThreadedWorker(LeanWorker):
    death_penalty_class = NoDeathPenalty

    def __init__(self, *args: Any, concurrency: int = 64, heartbeat_s: float = 5.0, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", max(2, int(heartbeat_s)))
        self.concurrency = concurrency
        self.heartbeat_s = heartbeat_s
        self.cold_shutdown = False
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: dict[str, tuple[Job, Execution]] = {}
        self._inflight_lock = threading.Lock()
        self._job_done = threading.Event()
        self._last_tick = 0.0
        self._last_schedule = 0.0
        self._safe_dequeue = SafeDequeue(self.connection, self.job_class.redis_job_namespace_prefix)
        self._popped: deque[Popped] = deque()  # taken with the last dequeue, not started yet
        # Jobs started together with those dequeued with them, not running yet, in dequeue order.
        self._started: dict[str, tuple[Job, Queue, Execution]] = {}
        self._running_started = False
        self._scheduler = SchedulerDuty(self.queues, self.connection, self.serializer, f"{self.name}-scheduler",
                                        lock_ttl_s=self.get_heartbeat_ttl(None))
        self.on_tick: list[Any] = []

    # --- RQ hooks --------------------------------------------------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        return max(1, int(self.heartbeat_s))

    def get_heartbeat_ttl(self, job: Job | None, working_time: float = 0.0) -> int:
        """Short: a job whose worker was killed is found abandoned within seconds, not minutes."""
        return int(self.heartbeat_s * 3) + 2

    # RQ's work loop quits on any Redis error outside its own dequeue (its forked worker would be replaced
    # by a supervisor). A genpool worker rides out an outage instead: the few calls that loop makes
    # itself are guarded here, one line each, and the loop goes back to the dequeue, which retries.

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except _REDIS_DOWN as exc:
            log.error("cannot reach Redis to check for `rq suspend` (%s); carrying on", exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except _REDIS_DOWN as exc:
            log.error("cannot reach Redis for registry maintenance (%s); next time", exc)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if timeout is None and pipeline is None and not self.beat_due():
            return  # RQ's loop beats after every job; the tick beats every heartbeat_s
        if pipeline is not None:  # part of someone's pipeline: its executor handles the error
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except _REDIS_DOWN as exc:
            log.error("heartbeat failed, Redis unreachable: %s", exc)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Start the job (unless it started with the jobs dequeued with it) and run it on a job thread; then
        the jobs that started with it, in their dequeue order."""
        started = self._started.pop(job.id, None)
        if started is not None:
            execution = started[2]
        else:
            try:
                execution = self.start_execution(job)
            except _REDIS_DOWN as exc:
                # Nothing was written (one MULTI): the job id stays in its queue's intermediate list, where
                # _recover_intermediate finds it once Redis is back; this slot is free again meanwhile.
                log.error("job %s: cannot start it, Redis unreachable (%s); it is requeued when Redis is back",
                          job.id, exc)
                self._slots.release()
                return
        self._submit(job, queue, execution)
        if not self._running_started:
            self._run_started()

    def _run_started(self) -> None:
        """Run the jobs that started together with the one RQ's loop took (or, at a stop, before it)."""
        self._running_started = True
        try:
            while self._started:
                job, queue, _ = next(iter(self._started.values()))
                self._dequeued(job, queue)
                self.execute_job(job, queue)  # RQ's hook, once per job (subclasses and RQ's tests wrap it)
        finally:
            self._running_started = False

    def _submit(self, job: Job, queue: Queue, execution: Execution) -> None:
        with self._inflight_lock:
            self._inflight[job.id] = (job, execution)
        if self._executor is None:  # one pool per work() run: teardown shuts it down
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="genpool-job")
        self._executor.submit(self._perform, job, queue, execution)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Dequeued | None:
        while not self._slots.acquire(timeout=min(self.heartbeat_s, SCHEDULE_EVERY_S)):
            self._tick()
        try:
            result = self._dequeue(timeout, max_idle_time)
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
        """RQ's per-queue maintenance, plus the quick intermediate-list recovery, all under RQ's lock: one
        worker at a time cleans a queue, so a stuck job is requeued once, not once per worker."""
        for queue in self.queues:
            if not queue.acquire_maintenance_lock():
                continue
            try:
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                self._recover_intermediate(queue)
                queue.intermediate_queue.cleanup(self, queue)
            finally:
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()  # type: ignore[assignment]  # rq declares it None (set to a datetime)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """RQ logs every failed job's traceback at ERROR; a failure the subclass has already recorded and
        logged in one line (``one_line_failure``) only goes through the exception handlers."""
        if self.one_line_failure(job, exc_info[1]):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: Any) -> None:
        if isinstance(job, GuardedJob):  # what the run queued for its end is written as if made at once
            job.flush_end_writes(self.connection)
        if not self.on_job_failure(job, queue, execution, exc_info[1]):
            super()._finalize_failure(job, queue, execution, exc_info)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            self.cold_shutdown = True
            raise

    def teardown(self) -> None:
        """Warm shutdown: let in-flight jobs finish (heartbeats continue meanwhile). Cold: do not wait."""
        try:
            if not self.cold_shutdown:
                self._run_started()  # started: they run (a cold stop leaves them to RQ's abandoned-job rule)
            while self._inflight and not self.cold_shutdown:
                self._tick()
                self._job_done.wait(0.05)
                self._job_done.clear()
        except SystemExit:  # the second signal arrived while waiting: a cold shutdown
            self.cold_shutdown = True
            raise
        finally:
            self._finish_teardown()

    # --- for subclasses ----------------------------------------------------------------------------

    def on_job_failure(self, job: Job, queue: Queue, execution: Execution, exc: BaseException | None) -> bool:
        """A job raised ``exc``: return True when it was handled here (RQ's failure path is skipped)."""
        return False

    def one_line_failure(self, job: Job, exc: BaseException | None) -> bool:
        """Log a failure the subclass records itself, in one line; True when it did (RQ's traceback is
        then not logged)."""
        return False

    def defer(self, job: Job, queue: Queue, execution: Execution, delay_s: float) -> None:
        """Put a started job back on its queue to run after ``delay_s`` (RQ's scheduled-job registry)."""
        with self.connection.pipeline() as pipe:
            queue.schedule_job(job, now() + timedelta(seconds=delay_s), pipeline=pipe)
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # --- the threaded part --------------------------------------------------------------------------

    def _finish_teardown(self) -> None:
        with contextlib.suppress(redis.RedisError):  # else found in the intermediate lists by any worker
            self._safe_dequeue.give_back(list(self._popped))
            self._popped.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=not self.cold_shutdown, cancel_futures=True)
            self._executor = None
        with contextlib.suppress(redis.RedisError):
            self._scheduler.release()
        super().teardown()

    def _perform(self, job: Job, queue: Queue, execution: Execution) -> None:
        try:
            self.perform_job(job, queue, execution)
        except BaseException as exc:  # noqa: BLE001 - a job thread must never take the worker down
            # RQ's bookkeeping around the job failed (not the job: perform_job handles that). Like a work
            # horse that died: fail the job now (RQ's Retry applies) rather than leave it "started".
            log.exception("job %s: unexpected error outside the job", job.id)
            with contextlib.suppress(Exception):  # an end MULTI that failed: the job's own writes, on their own
                if isinstance(job, GuardedJob):
                    job.flush_end_writes(self.connection)
            with contextlib.suppress(Exception):
                self.handle_job_failure(job, queue, exc_string=f"worker error outside the job: {exc!r}",
                                        execution=execution)
        finally:
            with self._inflight_lock:
                self._inflight.pop(job.id, None)
                idle = not self._inflight
            if idle:
                self._set_idle()
            self._slots.release()
            self._job_done.set()

    def _set_idle(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.set_state(WorkerStatus.IDLE)

    def _dequeue(self, timeout: int | None, max_idle_time: int | None) -> Dequeued | None:
        backoff_s = 1.0
        idle_since = time.monotonic()
        while True:
            self._tick()
            if self._stop_requested:
                return None
            if self._inflight:
                idle_since = time.monotonic()
            idle_left_s = None if max_idle_time is None else max_idle_time - (time.monotonic() - idle_since)
            if idle_left_s is not None and idle_left_s <= 0 and not self._inflight:
                return None  # max_idle_time: idle that long with nothing queued
            try:
                result = self._pop(timeout, idle_left_s)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.error("cannot reach Redis (%s); retrying in %.0f s", exc, backoff_s)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)
                continue
            if result is not None:
                self._dequeued(*result)
                return result
            if timeout is None and not self._popped:  # burst: done once the queues are empty, nothing in flight
                if not self._inflight:
                    return None
                self._job_done.wait(min(self.heartbeat_s, 0.2))  # a finishing job may enqueue more
                self._job_done.clear()

    def _dequeued(self, job: Job, queue: Queue) -> None:
        """What RQ's own dequeue does with a job it got."""
        self.reorder_queues(reference_queue=queue)
        job.redis_server_version = self.get_redis_server_version()
        if self.log_job_description:
            self.log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
        else:
            self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)

    def _pop(self, timeout: int | None, idle_left_s: float | None) -> Dequeued | None:
        # Back to the loop at least every SCHEDULE_EVERY_S, so due deferred jobs move on time.
        wait_s: float | None = None if timeout is None else min(self.dequeue_timeout, SCHEDULE_EVERY_S)
        if wait_s is not None and idle_left_s is not None:
            wait_s = max(0.05, min(wait_s, idle_left_s))
        if not self._popped:
            spare = self._reserve_slots()
            try:
                popped = self._safe_dequeue.pop(self._ordered_queues, wait_s, count=1 + spare)
            except BaseException:
                self._release_slots(spare)
                raise
            if len(popped) > 1 and all(hit.fields is not None and ":" not in hit.job_id for hit in popped):
                self._release_slots(spare - (len(popped) - 1))
                return self._start_together(popped)
            self._release_slots(spare)  # one job, or jobs that start one by one, each on a slot of its own
            self._popped.extend(popped)
        return self._next_popped()

    def _next_popped(self) -> Dequeued | None:
        if not self._popped:
            return None
        hit = self._popped.popleft()
        if hit.fields is None or ":" in hit.job_id:  # not read with the pop (or not RQ's plain job key)
            return self.queue_class._fetch_dequeued_job(
                self.connection, hit.queue_key, hit.job_id, job_class=self.job_class, serializer=self.serializer,
                death_penalty_class=self.death_penalty_class)
        return self._restore(hit)

    def _reserve_slots(self) -> int:
        """Take the free slots beyond the one this dequeue fills (at most PREFETCH_MAX): the jobs the same
        dequeue takes for them start with it and run on them."""
        if self.max_jobs is not None or self._dequeue_strategy not in (None, DequeueStrategy.DEFAULT):
            return 0  # work(max_jobs): none beyond them; round robin / random reorder after every job
        taken = 0
        while taken < PREFETCH_MAX and self._slots.acquire(blocking=False):
            taken += 1
        return taken

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def _start_together(self, popped: list[Popped]) -> Dequeued | None:
        """Jobs dequeued together start together (one MULTI for all their starts): the first goes back to
        RQ's loop, whose ``execute_job`` then runs the others, each on the slot reserved for it."""
        try:
            dequeued = [found for found in map(self._restore, popped) if found is not None]
        except Exception:  # a hash RQ cannot read: one by one, as they would have been (the others stay taken)
            self._popped.extend(popped)
            self._release_slots(len(popped) - 1)
            return self._next_popped()
        self._release_slots(len(popped) - max(1, len(dequeued)))  # hashes gone: their slots are free again
        if not dequeued:
            return None
        try:
            executions = self.start_executions([job for job, _ in dequeued])
        except _REDIS_DOWN as exc:
            # Nothing was written (one MULTI): the ids stay in their intermediate lists (see execute_job).
            log.error("jobs %s: cannot start them, Redis unreachable (%s); they are requeued when Redis is back",
                      ", ".join(job.id for job, _ in dequeued), exc)
            self._release_slots(len(dequeued) - 1)
            return None
        for (job, queue), execution in zip(dequeued, executions, strict=True):
            self._started[job.id] = (job, queue, execution)
        return dequeued[0]

    def _restore(self, hit: Popped) -> Dequeued | None:
        """RQ's ``_fetch_dequeued_job`` from the hash the dequeue script read: None when the job hash is gone."""
        queue = self.queue_class.from_queue_key(hit.queue_key, connection=self.connection, job_class=self.job_class,
                                                serializer=self.serializer,
                                                death_penalty_class=self.death_penalty_class)
        if not hit.fields:
            return None
        job = self.job_class(hit.job_id, connection=self.connection, serializer=self.serializer)
        try:
            job.restore(hit.fields)
        except Exception as exc:  # as RQ does: the caller's report names the job and its queue
            exc.job_id = hit.job_id  # type: ignore[attr-defined]
            exc.queue = queue  # type: ignore[attr-defined]
            raise
        return job, queue

    def _tick(self) -> None:
        """Heartbeats for the worker and every in-flight job and maintenance every heartbeat_s; the
        scheduler duty every SCHEDULE_EVERY_S (a deferred job is due at its wait's end, not a heartbeat later)."""
        at = time.monotonic()
        beat = at - self._last_tick >= self.heartbeat_s
        schedule = at - self._last_schedule >= SCHEDULE_EVERY_S
        if not (beat or schedule):
            return
        try:
            if beat:
                self._last_tick = at
                self.heartbeat()
                self.flush_stats()
                self._beat_inflight()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
            self._last_schedule = at
            self._scheduler.tick()
            if beat:
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
        beats: list[tuple[int, str]] = []  # (reply index of the job's HSET, job key)
        with self.connection.pipeline() as pipe:
            for job, execution in inflight:
                execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
                beats.append((len(pipe), job.key))
                job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
            replies = pipe.execute()
        # rq 3.0's Job.heartbeat ignores xx: an HSET that created the hash means the job was deleted
        # meanwhile (e.g. result_ttl=0); delete the stub it left, with no TTL, as RQ's maintain_heartbeats does.
        recreated = [key for index, key in beats if replies[index] == 1]
        if recreated:
            self.connection.delete(*recreated)

    def _recover_intermediate(self, queue: Queue) -> None:
        """Jobs a killed worker had dequeued but not started: requeue them after a few heartbeats (RQ's own
        rule waits a minute). Called with the queue's maintenance lock held."""
        stuck_after_s = self.get_heartbeat_ttl(None)
        intermediate = queue.intermediate_queue
        taken = {hit.job_id for hit in self._popped}  # this worker's, about to start
        for job_id in intermediate.get_job_ids():
            if job_id in self._inflight or job_id in taken or job_id in queue.started_job_registry:
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
