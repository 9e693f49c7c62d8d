"""The worker: an RQ worker that runs many jobs at once in one process, as genpool configures it.

Why threads in an RQ ``SimpleWorker``: a Gemini call spends seconds waiting on the network and ~2 ms of
CPU. RQ runs one job per process, and a process with google-genai + boto3 is ~75 MB, so 130 calls in
flight as processes need 6-10 GiB. Here one process holds ``concurrency`` calls in flight on one shared
google-genai Client, boto3 client and Redis pool; the main thread does RQ's part (dequeue, heartbeats,
maintenance, scheduling). No fork per job (RQ's forking Worker costs ~11 ms CPU a job vs ~1.5 ms).
Everything else is RQ's own: queues, registries, job statuses, `rq info`, rq-dashboard. The RQ half of
it (every override of RQ's internals) is ``genpool.worker.rqcompat``; this module adds genpool's choices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer

from genpool.shared import keys
from genpool.shared.errors import BudgetDeferred, Deferred
from genpool.worker import tasks
from genpool.worker.abandoned import record_abandoned
from genpool.worker.ahead import Grant
from genpool.worker.jobguard import GenpoolJob, record_refusal, refused
from genpool.worker.rqcompat.scheduler import reschedule_now
from genpool.worker.rqcompat.worker import ThreadedWorker
from genpool.worker.runner import JobFailed, Runner
from genpool.worker.runtime import get_runtime

log = logging.getLogger("genpool.worker")


class PoolWorker(ThreadedWorker):
    """JSON only, genpool's entry point only (``GenpoolJob``), genpool failures recorded by genpool."""

    job_class = GenpoolJob  # a subclass may set its own

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("exception_handlers", [record_refusal, record_abandoned])
        super().__init__(*args, **kwargs)
        self._ahead_of: dict[str, Runner] = {}  # jobs started with a decision made ahead -> whose it is

    def ride_start(self, job: Job, pipeline: Pipeline) -> Callable[[list[Any]], None] | None:
        """A first run's first acquire (its chain's head model) rides the job's start MULTI (worker/ahead.py)."""
        if not isinstance(job, GenpoolJob) or tasks.started_before(job):
            return None
        envelope = tasks.read_envelope(job)
        runtime = get_runtime()
        if envelope is None or envelope.job_id != job.id or not same_redis(runtime.redis, self.connection):
            return None
        runner = runtime.runner
        plan = runner.first_acquire(envelope)
        if plan is None:
            return None
        read = runtime.limiter.acquire_on(pipeline, plan.model, requests=1, tokens=plan.tokens, images=plan.images,
                                          max_wait_ms=plan.max_wait_ms, cost_micro=plan.cost_micro)

        def keep(replies: list[Any]) -> None:
            decision = read(replies[0])
            if decision is not None:
                runner.ahead.put(job.id, Grant(plan, decision, runner.ports.clock()))
                self._ahead_of[job.id] = runner

        return keep

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        try:
            return super().perform_job(job, queue, execution)
        finally:
            runner = self._ahead_of.pop(job.id, None)
            if runner is not None:  # a decision made ahead that the run did not take: a grant goes back
                try:
                    runner.release_ahead(job.id)
                except Exception:  # noqa: BLE001 - the job's own outcome is recorded; this is bookkeeping
                    log.exception("job %s: giving back its unused grant failed; it ages out of the window", job.id)

    def on_job_failure(self, job: Job, queue: Queue, execution: Execution, exc: BaseException | None) -> bool:
        if isinstance(exc, Deferred):
            # DEBUG: under a backlog at quota this is most jobs; INFO is one line per attempt (docs/observability.md)
            log.debug("job %s: no model can take it soon; back on the queue in %.1f s", job.id, exc.delay_s)
            self.defer(job, queue, execution, exc.delay_s)
            if isinstance(exc, BudgetDeferred):  # back at once when a budget is raised (genpool budget set)
                park(self.connection, queue.name, job.id)
            return True
        if isinstance(exc, JobFailed):
            job.retries_left = 0  # a terminal genpool failure: RQ's Retry is only for worker deaths
        return False

    def one_line_failure(self, job: Job, exc: BaseException | None) -> bool:
        """A failed job's record says why (its attempts were logged); a refusal is logged by record_refusal."""
        if isinstance(exc, JobFailed):
            error = exc.record.error
            log.warning("job %s failed: %s: %s", exc.record.id, error.type if error else "failed", exc)
            return True
        return refused(exc)


def same_redis(a: redis.Redis, b: redis.Redis) -> bool:
    """Both clients reach the same Redis database: a limiter call rides RQ's round trip only then."""
    ka, kb = a.connection_pool.connection_kwargs, b.connection_pool.connection_kwargs
    return all(ka.get(name) == kb.get(name) for name in ("host", "port", "path", "db"))


def park(connection: redis.Redis, queue_name: str, job_id: str) -> None:
    """Note a job deferred for a spent budget; entries older than a budget day are dropped here."""
    now_s = time.time()
    with connection.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.budget_parked(), {f"{queue_name}|{job_id}": now_s})
        pipe.zremrangebyscore(keys.budget_parked(), 0, now_s - 86_400)
        pipe.execute()


def resume_parked(connection: redis.Redis) -> int:
    """Every job parked for a spent budget becomes due now (a budget changed); returns how many."""
    with connection.pipeline(transaction=True) as pipe:
        pipe.zrange(keys.budget_parked(), 0, -1)
        pipe.delete(keys.budget_parked())
        members, _ = pipe.execute()
    return reschedule_now(connection, [(q, j) for q, _, j in (m.decode().partition("|") for m in members)])


def queues_for(connection: redis.Redis) -> list[Queue]:
    return [Queue(keys.queue_name(p), connection=connection, serializer=JSONSerializer) for p in keys.PRIORITIES]
