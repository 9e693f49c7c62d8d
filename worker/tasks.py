"""RQ entry point: ``contract.TASK`` names this module's ``generate`` (part of the wire format)."""

from __future__ import annotations

import logging
from typing import Any

import pydantic
from rq import get_current_job
from rq.exceptions import DeserializationError
from rq.job import Job

from genpool.shared import contract, keys
from genpool.shared.jobs import Envelope, ErrorInfo, ResultRecord
from genpool.shared.metrics import MetricsBatch
from genpool.worker.jobguard import GenpoolJob, RefusedJob
from genpool.worker.rqcompat.job import GuardedJob
from genpool.worker.runner import JobFailed
from genpool.worker.runtime import get_runtime

log = logging.getLogger("genpool.tasks")


def generate(envelope: Any) -> dict[str, str]:
    """Run one genpool job. The result record lives under genpool:result:<id>; this pointer to it is the
    job's return value, which RQ does not store for a genpool job (GenpoolJob.rq_result)."""
    runtime = get_runtime()
    job = get_current_job()
    parsed = job.envelope if isinstance(job, GenpoolJob) and job.envelope is not None else _parse(envelope)
    rerun, ran_before = _history(job)
    later = job.at_end if isinstance(job, GuardedJob) else None  # the record rides the job's end MULTI
    record = runtime.runner.run(parsed, rerun=rerun, ran_before=ran_before, later=later)
    return {"status": record.status, "result_key": keys.result(record.id)}


def read_envelope(job: GenpoolJob) -> Envelope | None:
    """The envelope of a job that runs ``generate``, parsed once (kept on the job for its run); None when the
    job runs something else, or would be refused, or its payload is not a valid envelope: its run says why."""
    if job.envelope is None:
        try:
            if job.resolve() is not generate:
                return None
            job.envelope = Envelope.model_validate(job.args[0])
        except (RefusedJob, DeserializationError, pydantic.ValidationError):
            return None
    return job.envelope


def started_before(job: Job) -> bool:
    """Whether this run of ``job`` is not its first (see ``_history``)."""
    return _history(job)[1]


def _history(job: Job | None) -> tuple[bool, bool]:
    """(RQ requeued this job after its worker died: retries_left went down; it started before, for any
    reason: a death, a deferral, a requeue). Outside an RQ job: a first run."""
    if job is None:
        return False, False
    rerun = contract.is_rerun(job.retries_left)
    return rerun, rerun or bool(getattr(job, "ran_before", True))


def _parse(envelope: Any) -> Envelope:
    """A malformed payload written straight into Redis fails that job with a clear error."""
    try:
        return Envelope.model_validate(envelope)
    except pydantic.ValidationError as exc:
        job = get_current_job()
        job_id = job.id if job is not None else "unknown"
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()[:5])
        record = ResultRecord(id=job_id, status="failed", kind=_kind(envelope),
                              error=ErrorInfo(type="invalid_payload", message=f"malformed job payload: {problems}"))
        metrics = MetricsBatch()
        metrics.inc("job_failures_total", kind=record.kind, error="invalid_payload")
        get_runtime().results.save(record, metrics)
        raise JobFailed(record) from None


def _kind(envelope: Any) -> str:
    kind = envelope.get("request", {}).get("kind") if isinstance(envelope, dict) and isinstance(
        envelope.get("request"), dict) else None
    return kind if kind in contract.JOB_KINDS else "unknown"

