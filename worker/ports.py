"""The outside world as the runner sees it: small Protocols, so the core is tested without it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from genpool.shared.jobs import Request, ResultRecord, StorageRef
from genpool.shared.metrics import MetricsBatch
from genpool.worker.answers import Generation
from genpool.worker.gemini import Call, Turn
from genpool.worker.progress import EventSink


class Decision(Protocol):
    status: str  # "granted" | "wait" | "unavailable"
    delay_ms: int
    wait_ms: int
    reason: str
    probe: bool  # this caller is the circuit breaker's half-open probe: report its outcome
    now_ms: int  # Redis's clock at the decision


class Limiter(Protocol):
    def acquire(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0,
                max_wait_ms: int = 0) -> Decision: ...

    def settle(self, model: str, reserved_tokens: int, actual_tokens: int) -> Any: ...

    def release(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0) -> Any: ...

    def penalize(self, model: str, retry_after_ms: int, scope: str = "minute") -> Any: ...


class AvailabilityPort(Protocol):
    def record_success(self, model: str) -> None: ...

    def record_failure(self, model: str, reason: str, granted_at_ms: int = 0) -> bool: ...

    def mark_down(self, model: str, reason: str, open_s: float | None = None) -> None: ...


class Gateway(Protocol):
    def build(self, request: Request, history: list[Turn] | None = None) -> Call: ...

    def generate(self, call: Call, model: str, timeout_s: float) -> Generation: ...


class Results(Protocol):
    def get(self, job_id: str) -> ResultRecord | None: ...

    def history(self, conversation_id: str) -> list[Turn]: ...

    def store_output(self, job_id: str, kind: str, model: str, gen: Generation) -> StorageRef: ...

    def find_output(self, job_id: str, kind: str) -> dict[str, str] | None: ...

    def save(self, record: ResultRecord, metrics: MetricsBatch, new_turns: list[Turn] | None = None,
             state: bytes | None = None) -> None: ...


@dataclass(frozen=True)
class Ports:
    gateway: Gateway
    limiter: Limiter
    availability: AvailabilityPort
    results: Results
    clock: Callable[[], float]
    wall: Callable[[], float]
    sleep: Callable[[float], None]
    events: EventSink | None = None  # where jobs submitted with events publish their progress
