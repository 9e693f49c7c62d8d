"""``/v1/jobs``: submit (one request or a list), the result record, the stored output, and the job's events
as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Body, Header, Path, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from genpool.gateway.auth import Caller, GatewayDep
from genpool.gateway.errors import ApiError, InvalidRequest, NotFound, TooLarge
from genpool.gateway.schemas import ERRORS, public_record
from genpool.shared.events import JobEvent
from genpool.shared.jobs import ChatRequest, ResultRecord
from genpool.shared.jobs import Request as JobRequest

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="a job id (32 hex digits)")]
OUTPUT_CHUNK_BYTES = 64 * 1024


class Submitted(BaseModel):
    id: str
    status: Literal["queued"] = "queued"
    existing: bool  # an Idempotency-Key seen before: this is the earlier job, nothing new was enqueued
    location: str


class SubmittedBatch(BaseModel):
    jobs: list[Submitted]


class NotFinished(ApiError):
    status = 409
    code = "not_finished"


@router.post("", status_code=202, response_model=Submitted | SubmittedBatch, responses=ERRORS)
async def submit(
    body: Annotated[JobRequest | list[JobRequest], Body(description="one job request, or a list of them")],
    response: Response, caller: Caller, gw: GatewayDep,
    priority: Literal["high", "default", "low"] = "default",
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Submitted | SubmittedBatch:
    """Enqueue jobs (202). The same Idempotency-Key again returns the same job(s) without a second call."""
    requests = body if isinstance(body, list) else [body]
    if not requests:
        raise InvalidRequest("the list is empty: send at least one request")
    if len(requests) > gw.api.max_batch:
        raise TooLarge(f"{len(requests)} requests in one call; at most {gw.api.max_batch}")
    if any(isinstance(r, ChatRequest) and r.conversation_id for r in requests):
        raise InvalidRequest("conversation_id: send a conversation's messages to /v1/conversations/{id}/messages "
                             "(its turns are kept in order there)")
    await gw.limits.admit(caller, cost=len(requests), spends=True)
    keys: list[str | None] = [None] * len(requests)
    if idempotency_key is not None:  # per token; one key for a list names each of its jobs by position
        keys = [f"{caller.name}:{idempotency_key}" + (f"#{i}" if isinstance(body, list) else "")
                for i in range(len(requests))]
    handles = await gw.submit(requests, caller.name, priority, keys)
    jobs = [Submitted(id=h.id, existing=h.existing, location=f"/v1/jobs/{h.id}") for h in handles]
    if isinstance(body, list):
        return SubmittedBatch(jobs=jobs)
    response.headers["Location"] = jobs[0].location
    return jobs[0]


#: A record's statuses: a job with one of them has its record (the status is read from it).
TERMINAL = frozenset(get_args(ResultRecord.model_fields["status"].annotation))


class JobStatus(BaseModel):
    id: str
    status: str  # queued | started | scheduled | deferred (finished and failed come as the whole record)


@router.get("/{job_id}", responses=ERRORS)
async def get_job(job_id: JobId, caller: Caller,
                  gw: GatewayDep) -> dict[str, Any]:
    """The result record once the job is finished or failed, else its status."""
    await gw.limits.admit(caller)
    record = await gw.owned_record(job_id, caller.name)
    if record is None:
        status = await gw.status(job_id)
        if status in TERMINAL:  # it ended between the two reads: the status came from its record, there now
            record = await gw.owned_record(job_id, caller.name)
        if record is None:
            return JobStatus(id=job_id, status=status).model_dump()
    return public_record(record)


@router.get("/{job_id}/output", responses={**ERRORS, 200: {"content": {"text/plain": {}, "application/json": {},
                                                                       "image/png": {}}}})
async def get_output(job_id: JobId, caller: Caller, gw: GatewayDep,
                     presign: Annotated[bool, Query(description="answer a short-lived URL instead")] = False,
                     ) -> Response:
    """The stored answer with its content type, streamed from the object store (or a presigned URL)."""
    await gw.limits.admit(caller)
    record = await gw.owned_record(job_id, caller.name)
    if record is None:
        raise NotFinished("the job has not finished yet; follow /v1/jobs/{id}/events")
    if record.storage is None:
        raise NotFound("the job failed: it has no output")
    store, ref = gw.store(), record.storage
    if presign:
        url = await run_in_threadpool(store.client.generate_presigned_url, "get_object",
                                      Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=gw.api.presign_s)
        return JSONResponse({"url": url, "expires_in_s": gw.api.presign_s})
    obj = await run_in_threadpool(store.client.get_object, Bucket=ref.bucket, Key=ref.key)
    body = obj["Body"]
    return StreamingResponse(iterate_in_threadpool(body.iter_chunks(OUTPUT_CHUNK_BYTES)),
                             media_type=obj.get("ContentType") or "application/octet-stream",
                             headers={"Content-Length": str(obj["ContentLength"])})


@router.get("/{job_id}/events", responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}})
async def job_events(job_id: JobId, caller: Caller, gw: GatewayDep,
                     last_event_id: Annotated[str | None, Header(pattern=r"^\d+-\d+$")] = None) -> Response:
    """Server-Sent Events: queued, started, chunk, attempt, restart, fallback, deferred, then finished or
    failed (the stream ends there). Each event's id resumes the stream (Last-Event-ID)."""
    await gw.limits.admit(caller)
    await gw.owned_record(job_id, caller.name)
    return StreamingResponse(_sse(gw.follow(job_id, last_event_id or "0-0")), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(events: AsyncIterator[JobEvent | None]) -> AsyncIterator[str]:
    async for event in events:
        if event is None:
            yield ": keep-alive\n\n"
            continue
        data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
        yield f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"
