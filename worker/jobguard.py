"""What a worker agrees to run from the queue: genpool's one entry point, with one JSON envelope.

RQ imports and calls whatever function a job names, and imports whatever callbacks it names. Anyone who
can write to Redis could then run any importable function on every worker (``builtins.open``,
``os.system``), pickle or not. A genpool worker refuses such jobs before importing anything, fails them
once (no RQ retry) and records a genpool failure so the job's handle reports it instead of waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rq.exceptions import DeserializationError
from rq.job import Job

from genpool.shared import contract
from genpool.shared.contract import TASK
from genpool.shared.errors import Permanent
from genpool.shared.jobs import Envelope, ErrorInfo, ResultRecord
from genpool.shared.metrics import MetricsBatch
from genpool.worker.rqcompat.job import GuardedJob

log = logging.getLogger("genpool.worker")


def _generate() -> Callable[..., Any]:
    from genpool.worker import tasks

    return tasks.generate


#: Entry-point name → the function it runs, looked up here: never imported by the name a job carries.
ENTRY_POINTS: dict[str, Callable[[], Callable[..., Any]]] = {name: _generate for name in contract.ENTRY_POINTS}
MAX_REASON_CHARS = 200


class RefusedJob(Permanent):
    """The queue held a job genpool will not run: another function, callbacks, or the wrong arguments."""

    kind = "refused_job"


class GenpoolJob(GuardedJob):
    """An RQ job that resolves only genpool's entry point and never imports a callback. Its result is
    genpool's record (keys.result, the job's id): RQ keeps no result stream for it (``return_value()`` is
    None; the entry point's return value, a pointer to the record, is not stored)."""

    rq_result = False
    #: The job's envelope, parsed once: by the worker's start when it makes the job's first acquire there
    #: (``tasks.read_envelope``), else by the run.
    envelope: Envelope | None = None

    def resolve(self) -> Callable[..., Any]:
        name = self.func_name  # DeserializationError for anything that is not genpool's JSON
        if not (isinstance(name, str) and name in ENTRY_POINTS) or self.instance is not None:
            raise RefusedJob(f"refused: the job names {_short(name)}; genpool workers run only "
                             f"{TASK}")
        args, kwargs = self.args, self.kwargs
        if not isinstance(args, list | tuple) or len(args) != 1 or not isinstance(kwargs, dict) or kwargs:
            raise RefusedJob("refused: a genpool job carries exactly one argument, its JSON envelope")
        return ENTRY_POINTS[name]()


def refused(exc: BaseException | None) -> bool:
    return isinstance(exc, RefusedJob | DeserializationError)


def record_refusal(job: Job, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> bool:
    """RQ exception handler: a refused job fails once, with a genpool record under its id."""
    if not refused(exc):
        return True
    from genpool.worker.runtime import get_runtime

    job.retries_left = 0  # retrying cannot make it runnable
    message = str(exc) if isinstance(exc, RefusedJob) else "refused: the job payload is not genpool's JSON"
    log.error("job %s: %s", job.id, message)
    record = ResultRecord(id=job.id, status="failed", kind="unknown",
                          error=ErrorInfo(type=RefusedJob.kind, message=message))
    metrics = MetricsBatch()
    metrics.inc("job_failures_total", kind="unknown", error=RefusedJob.kind)
    get_runtime().results.save(record, metrics)
    return True


def _short(name: object) -> str:
    return repr(name)[:MAX_REASON_CHARS]
