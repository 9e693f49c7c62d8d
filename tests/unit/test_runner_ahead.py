"""The head model's acquire made ahead, in the job's start MULTI (worker/ahead.py): the runner's side, with the
in-memory fakes of test_runner (the MULTI itself: tests/integration/test_start_rides.py)."""

from __future__ import annotations

from typing import Any

import pytest

from genpool.shared.catalog import parse_catalog
from genpool.shared.ratelimit.decision import BudgetHold
from genpool.worker.ahead import Grant, Plan
from genpool.worker.runner import Runner
from tests.unit.test_runner import CATALOG, Decision, FakeLimiter, FakeTime, World, envelope_for


class RecordingLimiter(FakeLimiter):
    def __init__(self, decisions: dict[str, list[Decision]] | None = None) -> None:
        super().__init__(decisions)
        self.released: list[tuple[str, int, int, int, int]] = []

    def release(self, model: str, start_ms: int, requests: int = 1, tokens: int = 0, images: int = 0) -> None:
        self.released.append((model, start_ms, requests, tokens, images))


class WantsCache:
    """The response cache's one question the plan asks: does this job use the cache."""

    def wanted(self, request: Any) -> bool:
        return bool(request.cache)


def ahead(runner: Runner, job_id: str, plan: Plan, decision: Decision, time: FakeTime) -> None:
    runner.ahead.put(job_id, Grant(plan, decision, time.clock()))  # what PoolWorker.ride_start keeps


def test_the_plan_is_the_acquire_the_jobs_first_attempt_would_make() -> None:
    made = World(limiter=RecordingLimiter())
    envelope = envelope_for({"kind": "text", "prompt": "x" * 400, "generation": {"max_output_tokens": 300}})
    made.run(envelope, ran_before=False)
    plan = World(limiter=RecordingLimiter()).runner().first_acquire(envelope)
    assert plan is not None
    assert [(plan.model, plan.tokens, plan.images, plan.max_wait_ms)] == made.limiter.acquired
    assert [plan.cost_micro] == made.limiter.costs
    image = World().runner().first_acquire(envelope_for({"kind": "image", "prompt": "a cat"}))
    assert image is not None and (image.model, image.images) == ("img", 1)


def test_a_job_served_from_the_cache_or_too_long_for_its_head_makes_no_acquire_ahead() -> None:
    runner = World().runner()
    runner.cache = WantsCache()  # type: ignore[assignment]
    assert runner.first_acquire(envelope_for({"kind": "text", "prompt": "hi", "cache": True})) is None
    assert runner.first_acquire(envelope_for({"kind": "text", "prompt": "hi"})) is not None
    short_head = {**CATALOG, "models": {**CATALOG["models"], "m1": {**CATALOG["models"]["m1"], "input_token_limit": 5}}}
    world = World(catalog=parse_catalog(short_head))
    assert world.runner().first_acquire(envelope_for({"kind": "text", "prompt": "y" * 100})) is None


def test_the_first_attempt_takes_the_decision_made_ahead_instead_of_a_round_trip() -> None:
    w = World(limiter=RecordingLimiter())
    runner, envelope = w.runner(), envelope_for()
    plan = runner.first_acquire(envelope)
    assert plan is not None
    ahead(runner, envelope.job_id, plan, Decision(delay_ms=500, now_ms=7), w.time)
    w.time.now += 0.2  # the job thread starts 200 ms after the decision
    record = runner.run(envelope, ran_before=False)
    assert record.status == "finished" and record.model_used == "m1"
    assert w.limiter.acquired == []  # no acquire of its own
    assert w.time.sleeps == [pytest.approx(0.3)]  # what was left of the granted delay
    runner.release_ahead(envelope.job_id)
    assert w.limiter.released == []  # taken: nothing to give back


def test_a_wait_made_ahead_spills_the_job_to_the_next_model_as_its_own_acquire_would() -> None:
    w = World(limiter=RecordingLimiter())
    runner, envelope = w.runner(), envelope_for()
    plan = runner.first_acquire(envelope)
    assert plan is not None
    ahead(runner, envelope.job_id, plan, Decision(status="wait", wait_ms=20_000, reason="rpm"), w.time)
    record = runner.run(envelope, ran_before=False)
    assert record.model_used == "m2"
    assert [a[0] for a in w.limiter.acquired] == ["m2"]  # m1's answer came from the start
    assert len(runner.ahead) == 0


def test_a_grant_the_job_never_took_goes_back_to_the_window_and_its_budget() -> None:
    w = World(limiter=RecordingLimiter())
    runner, envelope = w.runner(), envelope_for()
    plan = Plan("m1", tokens=40, images=0, max_wait_ms=1000, cost_micro=90)
    hold = BudgetHold((b"budget",), ("m1",), 90)
    ahead(runner, envelope.job_id, plan, Decision(now_ms=5_000, delay_ms=100, hold=hold), w.time)
    runner.release_ahead(envelope.job_id)
    assert w.limiter.released == [("m1", 5_100, 1, 40, 0)]
    assert w.limiter.money == [(hold, 0)]  # the held cost is swapped for nothing: never billed
    runner.release_ahead(envelope.job_id)  # once only
    assert len(w.limiter.released) == 1
    refused: dict[str, Any] = {"status": "wait", "wait_ms": 3000}
    ahead(runner, envelope.job_id, plan, Decision(**refused), w.time)
    runner.release_ahead(envelope.job_id)
    assert len(w.limiter.released) == 1  # a wait reserved nothing


def test_a_decision_for_another_model_is_not_taken_and_goes_back_at_the_end() -> None:
    """The routing changed between the start and the run: the job runs its own chain, the grant goes back."""
    w = World(limiter=RecordingLimiter())
    runner, envelope = w.runner(), envelope_for()
    ahead(runner, envelope.job_id, Plan("m3", 10, 0, 1000, 0), Decision(now_ms=1), w.time)
    assert runner.run(envelope, ran_before=False).model_used == "m1"
    assert [a[0] for a in w.limiter.acquired] == ["m1"]
    runner.release_ahead(envelope.job_id)
    assert [r[0] for r in w.limiter.released] == ["m3"]
