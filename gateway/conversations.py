"""``/v1/conversations/{id}``: send a message (answered within a bound, else 202) and read the history with
its structured state. A conversation belongs to the token that writes it; its turns never interleave."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from genpool.gateway.auth import Caller, GatewayDep
from genpool.gateway.context import Gateway, internal_conversation
from genpool.gateway.errors import NotFound
from genpool.gateway.schemas import ERRORS
from genpool.shared import keys
from genpool.shared.jobs import MAX_PROMPT_CHARS, GenerationConfig, ResultRecord

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
CONVERSATION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ConversationId = Annotated[str, Path(pattern=CONVERSATION_ID, description="chosen by the client, 1-64 characters")]
PRIORITY = "high"  # somebody is waiting for the answer


class MessageIn(BaseModel):
    """A user turn. ``json_schema`` makes the reply JSON checked against it (a structured conversation)."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    json_schema: dict[str, Any] | None = None
    model: str | None = None
    system_instruction: str | None = None
    generation: GenerationConfig | None = None
    stream: bool = False  # publish the answer's chunks (GET /v1/jobs/{id}/events shows them)
    wait_s: float | None = Field(None, ge=0, le=600)  # HTTP only: wait at most this long (capped by the server)

    def chat_request(self, conversation: str, stream: bool) -> dict[str, Any]:
        fields = self.model_dump(exclude_none=True, exclude={"wait_s", "stream"})
        return {"kind": "chat", "conversation_id": conversation, **fields, "stream": stream}


class Reply(BaseModel):
    role: Literal["model"] = "model"
    text: str
    model_used: str | None
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    cost_usd: float


class MessageOut(BaseModel):
    job_id: str
    conversation_id: str
    status: str  # finished | failed | queued | started (202: follow /v1/jobs/{job_id})
    reply: Reply | None = None
    state: Any = None  # a structured conversation's latest state (its last reply, parsed)
    error: dict[str, str] | None = None


class Turn(BaseModel):
    role: str
    text: str


class ConversationOut(BaseModel):
    id: str
    turns: list[Turn]
    state: Any = None
    turn_in_progress: str | None = None  # the job answering the latest message, if any


async def start_turn(gw: Gateway, caller: Caller, conversation_id: str, message: MessageIn, stream: bool,
                     idempotency_key: str | None = None) -> str:
    """Check, take the conversation's turn, enqueue, hand the turn to the job; returns the job id.
    Shielded: a client that goes away mid-way cannot leave a job enqueued without its turn."""
    request = gw.pool.validate(message.chat_request(internal_conversation(caller.name, conversation_id), stream))
    await gw.limits.admit(caller, spends=True)
    return await asyncio.shield(asyncio.create_task(_enqueue_turn(gw, caller, conversation_id, request,
                                                                  idempotency_key)))


async def _enqueue_turn(gw: Gateway, caller: Caller, conversation_id: str, request: Any,
                        idempotency_key: str | None) -> str:
    conversation = internal_conversation(caller.name, conversation_id)
    mine = await gw.turns.acquire(conversation, gw.api.turn_wait_s)
    key = f"{caller.name}:{conversation_id}:{idempotency_key}" if idempotency_key else None
    try:
        (handle,) = await gw.submit([request], caller.name, PRIORITY, [key], turn_holders={conversation: mine})
    except BaseException:
        await gw.turns.release(conversation, mine)
        raise
    return handle.id  # submit_many handed the turn to the job


async def reply_of(gw: Gateway, record: ResultRecord, text: str | None = None) -> tuple[Reply, Any]:
    """The answer as the client sees it; ``text`` when it was streamed, else read from the object store."""
    if text is None and record.storage is not None:
        store, ref = gw.store(), record.storage
        obj = await run_in_threadpool(store.client.get_object, Bucket=ref.bucket, Key=ref.key)
        text = (await run_in_threadpool(obj["Body"].read)).decode()
    reply = Reply(text=text or "", model_used=record.model_used, finish_reason=record.finish_reason,
                  prompt_tokens=record.prompt_tokens, output_tokens=record.output_tokens, cost_usd=record.cost_usd)
    return reply, await state_of(gw, record.conversation_id or "")


async def state_of(gw: Gateway, conversation: str) -> Any:
    raw = await gw.redis_call(gw.redis.get(keys.conversation_state(conversation)))
    return json.loads(raw) if raw else None


@router.post("/{conversation_id}/messages", response_model=MessageOut, responses={**ERRORS, 202: {
    "model": MessageOut, "description": "not answered within the wait: follow /v1/jobs/{job_id}"}})
async def send_message(conversation_id: ConversationId, body: MessageIn, response: Response,
                       caller: Caller, gw: GatewayDep,
                       idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> MessageOut:
    """Send a user message; waits for the answer up to ``wait_s`` (server cap GENPOOL_API_WAIT_S), else 202."""
    job_id = await start_turn(gw, caller, conversation_id, body, body.stream, idempotency_key)
    wait_s = min(body.wait_s if body.wait_s is not None else gw.api.wait_s, gw.api.wait_s)
    record = await _wait_for(gw, job_id, wait_s)
    if record is None:
        response.status_code = 202
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        return MessageOut(job_id=job_id, conversation_id=conversation_id, status=await gw.status(job_id))
    if record.status == "failed":
        error = {"code": record.error.type, "message": record.error.message} if record.error else None
        return MessageOut(job_id=job_id, conversation_id=conversation_id, status="failed", error=error)
    reply, state = await reply_of(gw, record)
    return MessageOut(job_id=job_id, conversation_id=conversation_id, status="finished", reply=reply, state=state)


async def _wait_for(gw: Gateway, job_id: str, wait_s: float) -> ResultRecord | None:
    deadline = time.monotonic() + wait_s
    events = gw.follow(job_id, idle_s=max(0.05, min(wait_s, 15.0)))
    try:
        while (left_s := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(anext(events), left_s)
            except (TimeoutError, StopAsyncIteration):
                break
            if event is not None and event.terminal:
                return await gw.record(job_id)
    finally:
        await events.aclose()
    return await gw.record(job_id)


@router.get("/{conversation_id}", response_model=ConversationOut, responses=ERRORS)
async def get_conversation(conversation_id: ConversationId, caller: Caller,
                           gw: GatewayDep) -> ConversationOut:
    """The conversation's turns in order, its latest structured state, and the turn in progress."""
    await gw.limits.admit(caller)
    conversation = internal_conversation(caller.name, conversation_id)
    raw = await gw.redis_call(gw.redis.lrange(keys.conversation(conversation), 0, -1))
    busy = await gw.turns.current_job(conversation)
    if not raw and busy is None:
        raise NotFound(f"no conversation {conversation_id} for this token")
    turns = [Turn(role=role, text=text) for role, text in (json.loads(t) for t in raw)]
    return ConversationOut(id=conversation_id, turns=turns, state=await state_of(gw, conversation),
                           turn_in_progress=busy)
