"""Jobs whose worker died on every try: RQ gives up on them without running any genpool code, so the
result record that ends the job for its producer is written here, from RQ's abandoned-job cleanup."""

from __future__ import annotations

import logging
from types import TracebackType

import redis
from rq.exceptions import AbandonedJobError
from rq.job import Job

from genpool.shared.errors import GenpoolError
from genpool.shared.jobs import Envelope, ErrorInfo, ResultRecord
from genpool.shared.metrics import MetricsBatch

log = logging.getLogger("genpool.worker")
KIND = "abandoned"


def record_abandoned(job: Job, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: TracebackType | None) -> bool:
    """RQ exception handler: a job abandoned with no retries left gets a failed record (unless it has one)."""
    if not isinstance(exc, AbandonedJobError) or (job.retries_left or 0) > 0:
        return True
    from genpool.worker.runtime import get_runtime

    results = get_runtime().results
    try:
        if results.get(job.id) is None:  # its output may have been recorded before the last death
            results.save(_record(job.id), _metrics(), notify=_notify_of(job))
            log.error("job %s: its worker died on every try; recorded as failed", job.id)
    except (redis.RedisError, GenpoolError) as exc_save:  # RQ's cleanup must go on for the other jobs
        log.error("job %s: abandoned, and its failure record could not be saved: %s", job.id, exc_save)
    return True


def _record(job_id: str) -> ResultRecord:
    return ResultRecord(id=job_id, status="failed", kind="unknown", error=ErrorInfo(
        type=KIND, message="the worker running this job died on every try (killed, out of memory or lost)"))


def _notify_of(job: Job) -> str | None:
    """The producer waiting for this job's record (its envelope's ``notify``); None when unreadable."""
    try:
        return Envelope.model_validate(job.args[0]).notify
    except Exception:  # noqa: BLE001 - a payload the job could not have run with: no one to tell
        return None


def _metrics() -> MetricsBatch:
    metrics = MetricsBatch()
    metrics.inc("job_failures_total", kind="unknown", error=KIND)
    return metrics
