"""What one running job tells the clients following it (its event stream, genpool.shared.events).

Events are best effort: a Redis hiccup while publishing is logged and the job goes on, so a paid answer is
never lost over a progress message. The result record stays the source of truth.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import redis

from genpool.shared.events import EventType, publish
from genpool.shared.jobs import ResultRecord

log = logging.getLogger("genpool.progress")


class EventSink(Protocol):
    def publish(self, job_id: str, type_: EventType, data: Mapping[str, Any]) -> None: ...


class RedisEvents:
    """Publishes to the job's stream: one round trip (XADD capped + EXPIRE) per event."""

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection

    def publish(self, job_id: str, type_: EventType, data: Mapping[str, Any]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        publish(pipe, job_id, type_, data)
        pipe.execute()


class Progress:
    """One job's events; silent when the job was submitted without events (or no sink is wired)."""

    def __init__(self, sink: EventSink | None, job_id: str) -> None:
        self._sink = sink
        self._job_id = job_id
        self._chunks_this_call = 0
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    def emit(self, type_: EventType, **data: Any) -> None:
        if self._sink is None:
            return
        try:
            self._sink.publish(self._job_id, type_, data)
        except (redis.RedisError, OSError) as exc:
            if not self._warned:
                log.warning("job %s: event %s not published (%s); the job goes on", self._job_id, type_, exc)
                self._warned = True

    def chunk(self, model: str, text: str) -> None:
        """Part of the answer, as the model generates it."""
        self._chunks_this_call += 1
        self.emit("chunk", model=model, text=text)

    def attempt(self, model: str, number: int, outcome: str, latency_s: float) -> None:
        """A call ended. One that failed after sending chunks voids them: the client must discard them."""
        self.emit("attempt", model=model, attempt=number, outcome=outcome, latency_s=round(latency_s, 4))
        if outcome != "ok" and self._chunks_this_call:
            self.emit("restart", model=model, reason=outcome)
        self._chunks_this_call = 0

    def ended(self, record: ResultRecord) -> None:
        if record.status == "finished":
            self.emit("finished", model_used=record.model_used, finish_reason=record.finish_reason,
                      prompt_tokens=record.prompt_tokens, output_tokens=record.output_tokens,
                      cost_usd=record.cost_usd)
        else:
            error = record.error.model_dump() if record.error else {"type": "failed", "message": "failed"}
            self.emit("failed", error=error)
