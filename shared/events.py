"""A job's progress as a Redis stream, for clients that follow it live (the gateway's SSE and WebSocket).

Only jobs submitted with ``events=True`` have one. The producer writes ``queued`` in the same transaction
that enqueues the job; the worker writes the rest. Entries carry two fields: ``type`` and ``data`` (JSON).
The stream is capped (``STREAM_MAXLEN`` entries) and expires ``STREAM_TTL_S`` after its last event; the
result record outlives it, so a late reader still learns how the job ended.

Types, in the order a client sees them:

- ``queued`` {kind, priority, account}
- ``started`` {rerun}
- ``chunk`` {model, text}: part of the answer as it is generated (jobs with ``stream: true``)
- ``attempt`` {model, attempt, outcome, latency_s}: one call ended ("ok" or an error kind)
- ``restart`` {model, reason}: the chunks sent so far are void (the call that sent them failed)
- ``fallback`` {from, to, reason}: the job moves on to the next model of its chain
- ``deferred`` {delay_s}: no model can take it soon; back on the queue
- ``finished`` {model_used, finish_reason, prompt_tokens, output_tokens, cost_usd} or ``failed`` {error}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from genpool.shared import keys

STREAM_MAXLEN = 2_000
STREAM_TTL_S = 3_600
EventType = Literal["queued", "started", "chunk", "attempt", "restart", "fallback", "deferred", "finished",
                    "failed"]
TERMINAL: frozenset[str] = frozenset(("finished", "failed"))


class Pipe(Protocol):
    """The two commands publishing needs (a redis-py client or pipeline)."""

    def xadd(self, name: str, fields: Any, *args: Any, **kwargs: Any) -> Any: ...

    def expire(self, name: str, time: int) -> Any: ...


@dataclass(frozen=True)
class JobEvent:
    id: str  # the stream entry id ("<ms>-<seq>"): an SSE client resumes after it (Last-Event-ID)
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


def publish(pipe: Pipe, job_id: str, type_: EventType, data: Mapping[str, Any]) -> None:
    """Queue one event (XADD, capped) and refresh the stream's expiry on ``pipe``."""
    key = keys.job_events(job_id)
    pipe.xadd(key, {"type": type_, "data": json.dumps(data, separators=(",", ":"), ensure_ascii=False)},
              maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(key, STREAM_TTL_S)


def parse_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> JobEvent:
    """One stream entry as read by XREAD / XRANGE (bytes or decoded strings)."""
    def text(value: bytes | str | None) -> str:
        return value.decode() if isinstance(value, bytes) else (value or "")

    values = {text(k): text(v) for k, v in fields.items()}
    try:
        data = json.loads(values.get("data") or "{}")
    except ValueError:
        data = {}
    return JobEvent(id=text(entry_id), type=values.get("type", ""), data=data if isinstance(data, dict) else {})
