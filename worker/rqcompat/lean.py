"""RQ's per-job bookkeeping, trimmed for a worker that runs many jobs at once (#17): the same keys, states
and registries as RQ 3.0's ``BaseWorker``, fewer Redis commands per job.

RQ writes, for every job, things a concurrent worker keeps current by time instead:
- its worker heartbeat (three commands) in the job's prepare pipeline, again in the suspension check and
  again after each dequeue: here the worker beats every ``heartbeat_s`` (the threaded worker's tick) and a
  beat asked for sooner than half of that after the last is skipped;
- ``rq suspend`` is checked once per ``SUSPENSION_CHECK_S`` instead of before every dequeue;
- the worker's ``busy`` state is written when it changes, not for every job;
- the worker's statistics (successful / failed job counts, total working time) are summed in memory while
  ``work()`` runs and written with the heartbeat and when ``work()`` returns (``rq info`` and rq-dashboard
  see them up to a heartbeat late);
- the execution record, the started registry, the job's ``started`` fields and its removal from the
  intermediate list go in one MULTI (RQ uses two, plus a job heartbeat the ``started`` fields repeat),
  one MULTI for all the jobs one dequeue took (``start_executions``), and a subclass may queue its own
  commands on it (``ride_start``: genpool's first limiter acquire, one round trip less a job);
- the job heartbeat RQ writes when the job function returns is not sent: the job's final save writes the
  same ``last_heartbeat`` field a moment later;
- a successful job's end is one MULTI (RQ: WATCH, SMEMBERS, then the MULTI: three round trips), without
  the status HSET its full save repeats and without EXPIREs of dependency keys that do not exist. Its
  dependents are found by the reply of the dependents key's EXPIRE in that MULTI and moved to ready right
  after it (RQ's ``enqueue_dependents``, as RQ's own failure path does), not inside it: a dependent enqueued
  meanwhile WATCHes the job's hash, which the MULTI writes, so it is either seen there or enqueued at once;
- a ``GuardedJob``'s end carries the writes its code queued with ``at_end`` (genpool's result record and
  its announcement: one round trip less a job), and writes only the fields its run changed (status, ended_at, last_heartbeat: RQ
  rewrites the whole hash), and no RQ result stream where its class keeps its results elsewhere
  (``rq_result``: genpool's jobs, whose result is genpool's record).
Each is a method RQ calls on the worker; tests/rqsuite runs RQ's own suite against it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import redis
from redis.client import Pipeline
from rq import SimpleWorker
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.utils import now
from rq.worker.base import WorkerStatus

from genpool.worker.rqcompat.job import GuardedJob

log = logging.getLogger("genpool.worker")

#: How soon ``rq suspend`` stops a worker from taking new jobs.
SUSPENSION_CHECK_S = 1.0


class _RideAborted(Exception):
    """A command riding a job's start was refused as it was queued: the MULTI was discarded."""


def _read_riders(riders: list[tuple[Callable[[list[Any]], None], int, int]], replies: list[Any]) -> None:
    for rider, start, end in riders:
        try:
            rider(replies[start:end])
        except Exception:  # noqa: BLE001 - the job has started: what rode along must not undo that
            log.exception("reading the replies of the commands riding a job's start failed")


class LeanWorker(SimpleWorker):
    heartbeat_s: float
    max_jobs: int | None = None  # the running work()'s: it takes no job beyond them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats_lock = threading.Lock()
        self._stats: dict[str, float] = {}
        self._batch_stats = False  # only while work() runs: a direct perform_job writes them at once
        self._prepared: set[str] = set()  # jobs whose start prepare_execution already wrote
        self._last_suspension_check = float("-inf")

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self.max_jobs = inspect.signature(SimpleWorker.work).bind(self, *args, **kwargs).arguments.get("max_jobs")
        self._batch_stats = True
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            self._batch_stats = False
            with contextlib.suppress(redis.RedisError):  # best effort at exit, like RQ's register_death
                self.flush_stats()

    # --- the job's start: one MULTI ---------------------------------------------------------------

    def start_execution(self, job: Job) -> Execution:
        """RQ's ``prepare_execution`` and ``prepare_job_execution`` in one MULTI (the worker's own path;
        RQ's two steps still work when called one after the other)."""
        return self.start_executions([job])[0]

    def start_executions(self, jobs: Sequence[Job]) -> list[Execution]:
        """``start_execution`` for jobs dequeued together, in one MULTI for all, with what the subclass queues
        on it (``ride_start``). A MULTI its commands made fail (a queue-time error discards the whole MULTI)
        is sent again without them: the jobs start in any case."""
        try:
            executions = self._start(jobs, ride=True)
        except _RideAborted as exc:
            log.error("the commands riding the start of %s aborted it (%s); starting without them",
                      ", ".join(job.id for job in jobs), exc.__cause__)
            executions = self._start(jobs, ride=False)
        self._prepared.update(job.id for job in jobs)
        return executions

    def _start(self, jobs: Sequence[Job], ride: bool) -> list[Execution]:
        executions: list[Execution] = []
        rq_spans: list[tuple[int, int]] = []  # where RQ's own commands' replies are
        riders: list[tuple[Callable[[list[Any]], None], int, int]] = []  # what reads, where its replies are
        with self.connection.pipeline() as pipe:
            if self.get_state() != WorkerStatus.BUSY:
                self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            rq_spans.append((0, len(pipe)))
            for job in jobs:
                start = len(pipe)
                executions.append(self._queue_start(job, pipe))
                rq_spans.append((start, len(pipe)))
                rider = self._ride(job, pipe) if ride else None
                if rider is not None:
                    riders.append((rider, rq_spans[-1][1], len(pipe)))
            try:
                replies = pipe.execute(raise_on_error=not riders)
            except redis.ResponseError as exc:
                if not riders:
                    raise
                # With riders, errors in the EXEC come back as replies: this one was refused as it was queued,
                # which discards the whole MULTI (nothing was written).
                raise _RideAborted from exc
        for reply in (reply for start, end in rq_spans for reply in replies[start:end]):
            if isinstance(reply, Exception):  # RQ's own commands: an error raises as it would have
                raise reply
        for execution in executions:
            self.executions[execution.id] = execution
        _read_riders(riders, replies)
        return executions

    def _queue_start(self, job: Job, pipe: Pipeline) -> Execution:
        """RQ's writes for a job's start: its execution, its ``started`` fields, out of the intermediate list."""
        execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
        job.prepare_for_execution(self.name, pipeline=pipe)
        pipe.persist(job.key)
        queue_key = self.queue_class.redis_queue_namespace_prefix + job.origin
        pipe.lrem(IntermediateQueue.get_intermediate_queue_key(queue_key), 1, job.id)
        return execution

    def _ride(self, job: Job, pipeline: Pipeline) -> Callable[[list[Any]], None] | None:
        try:
            return self.ride_start(job, pipeline)
        except Exception as exc:  # noqa: BLE001 - the job starts without it
            log.warning("job %s: nothing rides its start: %s: %s", job.id, type(exc).__name__, exc)
            return None

    def ride_start(self, job: Job, pipeline: Pipeline) -> Callable[[list[Any]], None] | None:
        """For subclasses: queue commands on the job's start MULTI (after RQ's own, once the job's
        ``prepare_for_execution`` ran) to save them a round trip of their own; return what reads their
        replies (error replies come as exceptions, in order), called once the MULTI went through. None:
        nothing queued. Queue nothing before a step that may raise: an error is logged and the job starts
        without its rider."""
        return None

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if job.id in self._prepared:
            self._prepared.discard(job.id)  # written by start_execution, in the same MULTI
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue=remove_from_intermediate_queue)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        job.ended_at = now()
        job.last_heartbeat = job.ended_at  # saved with the job's final state

    # --- a successful job's end: one MULTI --------------------------------------------------------

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry,
                           execution: Execution) -> None:
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        if (job.repeats_left or 0) > 0 or result_ttl is None or result_ttl <= 0:  # RQ's own path for these
            if isinstance(job, GuardedJob):
                job.flush_end_writes(self.connection)
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        with self.connection.pipeline() as pipe:
            if isinstance(job, GuardedJob):  # the job's own writes (genpool's record) first, in the same MULTI
                job.write_end(pipe)
            taken = job.ended_at - job.started_at  # type: ignore[operator]  # both set by perform_job
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(taken, pipe)
            job._status = JobStatus.FINISHED  # written by the save below (RQ also HSETs it alone first)
            if isinstance(job, GuardedJob):
                pipe.hset(job.key, mapping=job.end_fields())
            else:
                job.save(pipeline=pipe, include_meta=False, include_result=False)
            if getattr(job, "rq_result", True):
                Result.create(job, Result.Type.SUCCESSFUL, return_value=job._result, ttl=result_ttl,
                              worker_name=self.name, pipeline=pipe, execution_id=execution.id,
                              execution_started_at=execution.created_at, execution_ended_at=job.ended_at)
            job.finished_job_registry.add(job, result_ttl, pipe)
            pipe.expire(job.key, result_ttl)
            dependents_at = len(pipe)
            pipe.expire(job.dependents_key, result_ttl)  # 1: the key exists, the job has dependents
            if job._dependency_ids:
                pipe.expire(job.dependencies_key, result_ttl)
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            has_dependents = pipe.execute()[dependents_at]
        if isinstance(job, GuardedJob):
            job.end_written()
        # RQ reads the dependents before its MULTI, so a job canceled while it ran (status `canceled` until its
        # end writes `finished`) leaves them deferred: the same here, from the canceled registry.
        if has_dependents and job.id not in queue.canceled_job_registry:
            self._enqueue_dependents_safely(queue, job)
        self._release_slot_safely(job)
        if self.log_job_description:  # RQ's own lines
            self.log.info("Successfully completed %s job in %ss on worker %s", job.description, taken, self.name)
        else:
            self.log.info("Successfully completed job %s in %ss on worker %s", job.id, taken, self.name)

    # --- by time, not per job ---------------------------------------------------------------------

    def check_for_suspension(self, burst: bool) -> None:
        at = time.monotonic()
        if at - self._last_suspension_check < SUSPENSION_CHECK_S:
            return
        self._last_suspension_check = at
        super().check_for_suspension(burst)

    def beat_due(self) -> bool:
        """False when the worker beat less than half a heartbeat ago (its TTL is many heartbeats)."""
        last = self.last_heartbeat
        return last is None or (now() - last).total_seconds() >= self.heartbeat_s / 2

    def increment_successful_job_count(self, pipeline: Pipeline | None = None) -> None:
        self._count("successful_job_count", 1, pipeline)

    def increment_failed_job_count(self, pipeline: Pipeline | None = None) -> None:
        self._count("failed_job_count", 1, pipeline)

    def increment_total_working_time(self, job_execution_time: timedelta, pipeline: Pipeline) -> None:
        self._count("total_working_time", job_execution_time.total_seconds(), pipeline)

    def flush_stats(self) -> None:
        """Write the statistics summed since the last flush (kept for the next one if Redis is away)."""
        with self._stats_lock:
            stats, self._stats = self._stats, {}
        if not stats:
            return
        try:
            with self.connection.pipeline() as pipe:
                self._write_stats(pipe, stats)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            with self._stats_lock:
                for name, amount in stats.items():
                    self._stats[name] = self._stats.get(name, 0) + amount
            raise

    def _count(self, name: str, amount: float, pipeline: Pipeline | None) -> None:
        if not self._batch_stats:
            self._write_stats(pipeline if pipeline is not None else self.connection, {name: amount})
            return
        with self._stats_lock:
            self._stats[name] = self._stats.get(name, 0) + amount

    def _write_stats(self, conn: Any, stats: dict[str, float]) -> None:
        for name, amount in stats.items():
            if name == "total_working_time":
                conn.hincrbyfloat(self.key, name, amount)
            else:
                conn.hincrby(self.key, name, int(amount))
