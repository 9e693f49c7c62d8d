"""Retry, fall back, fail or defer: every decision about a failure, as small pure functions over genpool's
error types (no Redis, no clock). The runner carries them out; nothing else decides.

The table (README, "Failure policy"):
- AuthError, InvalidRequest, ContentBlocked, OutputTruncated → fail the job (no other model is tried:
  a bad key or a bad request would burn every model for nothing);
- ModelUnavailable (404, breaker open), ContextTooLong → fall back at once;
- RateLimited per day → fall back (the model is out until the Pacific midnight reset);
- RateLimited per minute, TransientError, UnusableAnswer → retry the same model with exponential
  backoff + jitter, never sooner than Gemini's RetryInfo.retryDelay, up to the model's max_retries and
  within the job's deadline; then fall back;
- ServiceUnavailable (genpool's own Redis or S3 is down) → defer the job: back on the queue, not failed.
What the fleet learns from a failed call (``breaker_signal``): a 404 marks the model down, a transient
failure counts towards its breaker, any other answer of a half-open probe closes it; a 429 cools it down.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import tenacity

from genpool.shared import errors as e

T = TypeVar("T")

FAIL_TYPES: tuple[type[e.GenpoolError], ...] = (e.AuthError, e.InvalidRequest, e.ContentBlocked,
                                                e.OutputTruncated, e.ConfigError)


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 8.0
    jitter_s: float = 0.5

    def wait_s(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential in the attempt number (1-based), capped, plus uniform jitter."""
        return min(self.max_s, self.initial_s * 2.0 ** (attempt - 1)) + rng() * self.jitter_s


def same_model_retryable(exc: BaseException, max_wait_s: float) -> bool:
    """Whether ``exc`` is worth another attempt on the same model."""
    if isinstance(exc, e.RateLimited):
        return exc.scope == "minute" and (exc.retry_after_s or 0) <= max_wait_s
    return isinstance(exc, e.TransientError | e.UnusableAnswer)


def after_model(exc: BaseException) -> Literal["fallback", "fail", "defer"]:
    """What the job does once a model has given up with ``exc``."""
    if isinstance(exc, e.ServiceUnavailable):  # an outage of genpool's own Redis is not the job's failure
        return "defer"
    if isinstance(exc, FAIL_TYPES):
        return "fail"
    if isinstance(exc, e.GenpoolError):
        return "fallback"
    return "fail"


def breaker_signal(exc: BaseException, probe: bool) -> Literal["down", "failure", "answered"] | None:
    """What the model's fleet-wide state learns from a call that failed with ``exc``: ``down`` (404: retired
    or unknown), ``failure`` (counts towards opening its breaker), ``answered`` (it is up: a half-open probe
    closes the breaker), or nothing."""
    if isinstance(exc, e.ModelNotFound):
        return "down"
    if isinstance(exc, e.TransientError):
        return "failure"
    return "answered" if probe else None


def model_answered(exc: BaseException | None) -> bool:
    """The call shows the model is answering (for the stall watch): anything but a transient failure."""
    return not isinstance(exc, e.TransientError)


def retry_after_s(exc: BaseException | None) -> float:
    return float(getattr(exc, "retry_after_s", None) or 0.0)


def wait_strategy(backoff: Backoff, rng: Callable[[], float] = random.random) -> Callable[[tenacity.RetryCallState], float]:
    """Backoff with jitter, but never sooner than the server's RetryInfo.retryDelay."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(backoff.wait_s(state.attempt_number, rng), retry_after_s(exc))

    return wait


class stop_at_deadline(tenacity.stop.stop_base):  # noqa: N801 - named like tenacity's own stops
    """Stop when sleeping before the next attempt would cross the job's deadline."""

    def __init__(self, deadline_at: float, clock: Callable[[], float]) -> None:
        self.deadline_at = deadline_at
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) >= self.deadline_at


def retrying(max_retries: int, deadline_at: float, max_wait_s: float, *, clock: Callable[[], float],
             sleep: Callable[[float], None], backoff: Backoff | None = None,
             rng: Callable[[], float] = random.random) -> tenacity.Retrying:
    """The per-model retry loop: attempts = 1 + max_retries, deadline-bounded, sleep injected."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max_retries + 1) | stop_at_deadline(deadline_at, clock),
        wait=wait_strategy(backoff or Backoff(), rng),
        retry=tenacity.retry_if_exception(lambda exc: same_model_retryable(exc, max_wait_s)),
        sleep=sleep,
        reraise=True,
    )


def first_then_retry(retry_loop: Callable[[], tenacity.Retrying], fn: Callable[..., T], *args: Any) -> T:
    """``retry_loop()(fn, *args)``, with the loop built only once a first attempt has failed: a first attempt
    that succeeds (almost every one) costs no tenacity ``Retrying`` (~35 µs each, twice a job: bench_cpu).
    The failed first attempt is handed to the loop as its attempt 1, so the loop's numbering, waits, stops
    and logging are exactly what they are when the loop makes every attempt itself."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - handed to the loop, which retries or re-raises it
        first: Exception | None = exc

    def attempt(*call_args: Any) -> T:
        nonlocal first
        if first is not None:
            failed, first = first, None
            raise failed
        return fn(*call_args)

    return retry_loop()(attempt, *args)
