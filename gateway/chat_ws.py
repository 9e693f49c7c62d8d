"""The chat WebSocket ``/v1/conversations/{id}``: the client sends messages; the server answers each with
``typing`` on, the text as it is generated (``chunk``; ``restart`` voids what came before), the final
``message`` (model, tokens, cost, state) and ``typing`` off, or an ``error`` {code, message}.

Authentication: ``Authorization: Bearer <token>``, or (browsers cannot set headers on a WebSocket) the
subprotocols ``genpool.v1`` and ``bearer.<token>``. Messages of one socket are answered in order; a
socket may queue a few behind the one being answered (GENPOOL_API_MAX_PENDING).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

import pydantic
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from genpool.gateway.context import Gateway
from genpool.gateway.conversations import CONVERSATION_ID, MessageIn, reply_of, start_turn
from genpool.gateway.errors import ApiError, InvalidRequest, Unauthorized, from_genpool, log
from genpool.gateway.tokens import TokenInfo
from genpool.producer.client import describe_validation_error
from genpool.shared.errors import GenpoolError
from genpool.shared.events import JobEvent

router = APIRouter()
SUBPROTOCOL = "genpool.v1"
TOKEN_SUBPROTOCOL = "bearer."
CLOSE_CODES = {401: 4401, 404: 4404, 429: 4429, 503: 4503}


@router.websocket("/v1/conversations/{conversation_id}")
async def chat(ws: WebSocket, conversation_id: str) -> None:
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    gw: Gateway = ws.app.state.gateway
    try:
        if not re.match(CONVERSATION_ID, conversation_id):
            raise InvalidRequest("conversation id: 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
        caller = await gw.caller(_authorization(ws, offered))
        await gw.limits.admit(caller)
    except GenpoolError as exc:
        error = from_genpool(exc)
        await ws.send_json({"type": "error", **error.body()})
        await ws.close(code=CLOSE_CODES.get(error.status, 4400), reason=error.code)
        return
    await ChatSession(ws, gw, caller, conversation_id).run()


def _authorization(ws: WebSocket, offered: list[str]) -> str | None:
    header = ws.headers.get("authorization")
    if header:
        return header
    token = next((p.removeprefix(TOKEN_SUBPROTOCOL) for p in offered if p.startswith(TOKEN_SUBPROTOCOL)), None)
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <token>' or the subprotocols 'genpool.v1' and "
                           "'bearer.<token>'")
    return f"Bearer {token}"


class ChatSession:
    """One socket: a reader that answers pings and queues messages, and a loop that answers them in order."""

    def __init__(self, ws: WebSocket, gw: Gateway, caller: TokenInfo, conversation_id: str) -> None:
        self.ws, self.gw, self.caller, self.conversation_id = ws, gw, caller, conversation_id
        self.inbox: asyncio.Queue[tuple[MessageIn, Any]] = asyncio.Queue(gw.api.max_pending)
        self._send_lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_json(payload)

    async def error(self, exc: GenpoolError, **extra: Any) -> None:
        await self.send({"type": "error", **from_genpool(exc).body(), **extra})

    async def run(self) -> None:
        answering = asyncio.create_task(self._answer_in_order())
        try:
            while True:
                frame = await self.ws.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                if frame.get("text") is None:
                    await self.error(InvalidRequest("send text frames holding JSON, not binary ones"))
                    continue
                await self._receive(frame["text"])
        except WebSocketDisconnect:
            pass
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await answering

    async def _receive(self, raw: str) -> None:
        ref = None
        try:
            if len(raw.encode()) > self.gw.api.max_message_bytes:
                raise InvalidRequest(f"message larger than {self.gw.api.max_message_bytes} bytes")
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise InvalidRequest('send a JSON object: {"type": "message", "message": "..."} or {"type": "ping"}')
            ref = data.pop("ref", None)
            kind = data.pop("type", "message")
            if kind == "ping":
                await self.send({"type": "pong", "ref": ref})
                return
            if kind != "message":
                raise InvalidRequest(f"type: {kind!r} is not one of message, ping")
            self.inbox.put_nowait((MessageIn.model_validate(data), ref))
        except ValueError as exc:  # json and pydantic errors, a full inbox
            await self.error(_invalid(exc), ref=ref)
        except asyncio.QueueFull:
            await self.error(InvalidRequest(f"{self.gw.api.max_pending} messages are already waiting; "
                                            "send again after an answer"), ref=ref)
        except GenpoolError as exc:
            await self.error(exc, ref=ref)

    async def _answer_in_order(self) -> None:
        while True:
            message, ref = await self.inbox.get()
            try:
                await self._answer(message, ref)
            except GenpoolError as exc:
                await self.error(exc, ref=ref)
            except WebSocketDisconnect:
                return
            except Exception:  # noqa: BLE001 - the socket stays up; the detail goes to the log only
                log.exception("websocket turn failed")
                await self.error(GenpoolError("internal error"), ref=ref)

    async def _answer(self, message: MessageIn, ref: Any) -> None:
        job_id = await start_turn(self.gw, self.caller, self.conversation_id, message, stream=True)
        await self.send({"type": "typing", "on": True, "job_id": job_id, "ref": ref})
        try:
            pieces: list[str] = []
            async for event in self.gw.follow(job_id):
                if event is not None:
                    await self._relay(event, job_id, ref, pieces)
        finally:
            await self.send({"type": "typing", "on": False, "job_id": job_id, "ref": ref})

    async def _relay(self, event: JobEvent, job_id: str, ref: Any, pieces: list[str]) -> None:
        data = event.data
        if event.type == "chunk":
            pieces.append(str(data.get("text", "")))
            await self.send({"type": "chunk", "job_id": job_id, "model": data.get("model"), "text": data.get("text")})
        elif event.type == "restart":
            pieces.clear()
            await self.send({"type": "restart", "job_id": job_id, "model": data.get("model"),
                             "reason": data.get("reason")})
        elif event.type == "fallback":
            await self.send({"type": "fallback", "job_id": job_id, "from": data.get("from"), "to": data.get("to")})
        elif event.type == "finished":
            record = await self.gw.record(job_id)
            if record is not None:
                reply, state = await reply_of(self.gw, record, "".join(pieces) if pieces else None)
                await self.send({"type": "message", "job_id": job_id, "ref": ref, **reply.model_dump(),
                                 "state": state})
        elif event.type == "failed":
            error = data.get("error") or {}
            await self.send({"type": "error", "job_id": job_id, "ref": ref, "code": error.get("type", "failed"),
                             "message": error.get("message", "the job failed")})


def _invalid(exc: ValueError) -> ApiError:
    if isinstance(exc, pydantic.ValidationError):
        return InvalidRequest(describe_validation_error(exc))
    if isinstance(exc, json.JSONDecodeError):
        return InvalidRequest(f"not JSON: {exc.msg} at character {exc.pos}")
    return InvalidRequest(str(exc))
