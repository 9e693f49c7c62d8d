"""Runner under an outage of genpool's own Redis (limiter, breaker state): the job is put back on the
queue, never failed for it, and an answer already paid for is never thrown away."""

from __future__ import annotations

import pytest

from genpool.shared import errors as e
from tests.unit.test_runner import FakeAvailability, FakeLimiter, World, envelope_for


class DownLimiter(FakeLimiter):
    """A limiter whose Redis is unreachable for ``acquire`` and/or ``settle``."""

    def __init__(self, acquire_down: bool = False, settle_down: bool = False) -> None:
        super().__init__()
        self.acquire_down = acquire_down
        self.settle_down = settle_down

    def acquire(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0, max_wait_ms: int = 0,
                cost_micro: int = 0):
        if self.acquire_down:
            raise e.LimiterUnavailable(f"rate limiter unreachable for {model!r}")
        return super().acquire(model, requests, tokens, images, max_wait_ms, cost_micro)

    def settle(self, model: str, start_ms: int, reserved_tokens: int, actual_tokens: int, hold=None,
               actual_micro: int = 0):
        if self.settle_down:
            raise e.LimiterUnavailable(f"rate limiter cannot settle for {model!r}")
        return super().settle(model, start_ms, reserved_tokens, actual_tokens, hold, actual_micro)


def test_limiter_outage_defers_the_job_instead_of_failing_it() -> None:
    w = World(limiter=DownLimiter(acquire_down=True))
    with pytest.raises(e.Deferred) as caught:
        w.run(envelope_for())
    assert caught.value.delay_s > 0
    assert "limiter_unavailable" in str(caught.value)
    assert w.gateway.calls == []  # fail closed: no Gemini call without the limiter
    assert w.results.saved == []  # no failed record for an outage


class DownAvailability(FakeAvailability):
    """The breaker's Redis is unreachable when a failure is recorded."""

    def record_failure(self, model: str, reason: str, granted_at_ms: int = 0) -> bool:
        raise e.LimiterUnavailable("cannot reach Redis to record model availability")


def test_redis_outage_after_a_failed_call_defers_too() -> None:
    w = World(availability=DownAvailability())
    w.gateway.scripts["m1"] = [e.ServerError("503 overloaded")]
    with pytest.raises(e.Deferred):
        w.run(envelope_for())
    assert w.gateway.models_called() == ["m1"]  # not walked down the whole chain on an outage
    assert w.results.saved == []


def test_limiter_outage_after_a_paid_answer_keeps_the_answer() -> None:
    w = World(limiter=DownLimiter(settle_down=True))
    record = w.run(envelope_for())
    assert record.status == "finished"
    assert w.gateway.models_called() == ["m1"]  # paid once
    assert len(w.results.stored) == 1 and w.results.saved[0][0].status == "finished"


def test_a_request_error_still_fails_the_job() -> None:
    """The outage rule is narrow: a job's own permanent error still fails it at once."""
    w = World()
    w.gateway.scripts["m1"] = [e.InvalidRequest("400 bad request")]
    record = None
    with pytest.raises(Exception) as caught:
        w.run(envelope_for())
    record = caught.value.record  # JobFailed carries the saved record
    assert record.status == "failed" and record.error.type == "invalid_argument"
