"""The outside world as the runner sees it: small Protocols, so the core is tested without it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from genpool.shared.errors import QuotaScope
from genpool.shared.jobs import Request, ResultRecord, StorageRef
from genpool.shared.metrics import MetricsBatch
from genpool.shared.ratelimit.decision import BudgetHold
from genpool.worker.answers import Generation
from genpool.worker.gemini import Call, Turn
from genpool.worker.progress import EventSink

#: Queues writes (on a Redis pipeline) for the round trip that ends the job, and what to run after it:
#: a finished job's record rides RQ's end instead of a round trip of its own (worker/rqcompat, ``at_end``).
Later = Callable[[Callable[[Any], None], Callable[[], None] | None], None]


class Decision(Protocol):
    @property
    def status(self) -> str: ...  # "granted" | "wait" | "unavailable"

    @property
    def delay_ms(self) -> int: ...

    @property
    def wait_ms(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def probe(self) -> bool: ...  # this caller is the circuit breaker's half-open probe: report its outcome

    @property
    def now_ms(self) -> int: ...  # Redis's clock at the decision

    @property
    def start_at_ms(self) -> int: ...  # when the granted call may start, on Redis's clock

    @property
    def hold(self) -> BudgetHold | None: ...  # what the grant holds of the budgets set (settle with it)


class Limiter(Protocol):
    def acquire(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0,
                max_wait_ms: int = 0, cost_micro: int = 0) -> Decision: ...

    def settle(self, model: str, start_ms: int, reserved_tokens: int, actual_tokens: int,
               hold: BudgetHold | None = None, actual_micro: int = 0) -> Any: ...

    def release(self, model: str, start_ms: int, requests: int = 1, tokens: int = 0, images: int = 0) -> Any: ...

    def penalize(self, model: str, retry_after_ms: int, scope: QuotaScope = "minute") -> Any: ...


class AvailabilityPort(Protocol):
    def record_success(self, model: str) -> None: ...

    def record_failure(self, model: str, reason: str, granted_at_ms: int = 0) -> bool: ...

    def mark_down(self, model: str, reason: str, open_s: float | None = None) -> None: ...


class Gateway(Protocol):
    def build(self, request: Request, history: list[Turn] | None = None) -> Call: ...

    def generate(self, call: Call, model: str, timeout_s: float) -> Generation: ...


class Results(Protocol):
    def begin(self, job_id: str, route: str) -> tuple[ResultRecord | None, str]: ...

    def pin(self, job_id: str, route: str) -> None: ...

    def history(self, conversation_id: str) -> list[Turn]: ...

    def store_output(self, job_id: str, kind: str, model: str, gen: Generation) -> StorageRef: ...

    def find_output(self, job_id: str, kind: str) -> dict[str, str] | None: ...

    def check_storage(self) -> None: ...  # raises ConfigError while the bucket refuses genpool

    def save(self, record: ResultRecord, metrics: MetricsBatch, new_turns: list[Turn] | None = None,
             state: bytes | None = None, notify: str | None = None, later: Later | None = None) -> None: ...


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
