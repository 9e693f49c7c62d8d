"""The fleet-wide circuit breaker (shared/ratelimit/lua/breaker.lua) with the limiter's acquire, on a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.availability import Availability, BreakerPolicy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

MODEL = "breaker-model"
OPEN_S = 0.3


@pytest.fixture
def parts(real_redis: redis.Redis) -> tuple[Availability, RedisLimiter]:
    policy = BreakerPolicy(failure_threshold=3, failure_window_s=30.0, open_s=OPEN_S, max_open_s=4 * OPEN_S,
                           not_found_open_s=60.0)
    limiter = RedisLimiter(real_redis, {MODEL: ModelLimits(rpm=10_000, tpm=10**8)}, probe_ms=5_000)
    return Availability(real_redis, policy), limiter


def wait_out(seconds: float) -> None:
    time.sleep(seconds + 0.1)  # past a cooldown on Redis's clock (whole-ms resolution)


def test_threshold_failures_open_the_breaker_for_every_caller(parts) -> None:
    availability, limiter = parts
    assert [availability.record_failure(MODEL, "server_error") for _ in range(2)] == [False, False]
    assert limiter.acquire(MODEL).status == "granted"
    assert availability.record_failure(MODEL, "server_error") is True
    decision = limiter.acquire(MODEL)
    assert decision.status == "unavailable" and decision.reason == "breaker_open:server_error"
    assert 0 < decision.wait_ms <= OPEN_S * 1000
    assert availability.state(MODEL)["opened_total"] == "1"


def test_failures_while_open_do_not_extend_it(parts) -> None:
    availability, limiter = parts
    for _ in range(3):
        availability.record_failure(MODEL, "timeout")
    until = availability.state(MODEL)["unavailable_until_ms"]
    assert availability.record_failure(MODEL, "timeout") is True  # a straggler: the model is open, do not retry
    assert availability.state(MODEL)["unavailable_until_ms"] == until


def test_half_open_lets_one_probe_through_and_its_success_closes(parts) -> None:
    availability, limiter = parts
    for _ in range(3):
        availability.record_failure(MODEL, "stalled")
    wait_out(OPEN_S)
    probe = limiter.acquire(MODEL)
    assert probe.status == "granted" and probe.probe and probe.reason == "probe"
    other = limiter.acquire(MODEL)
    assert other.status == "unavailable" and other.reason == "probing"
    availability.record_success(MODEL)
    after = limiter.acquire(MODEL)
    assert after.status == "granted" and not after.probe


def test_a_failed_probe_opens_again_at_once(parts) -> None:
    availability, limiter = parts
    for _ in range(3):
        availability.record_failure(MODEL, "server_error")
    wait_out(OPEN_S)
    assert limiter.acquire(MODEL).probe
    assert availability.record_failure(MODEL, "server_error") is True  # one failure suffices when half-open
    assert limiter.acquire(MODEL).status == "unavailable"
    assert availability.state(MODEL)["opened_total"] == "2"


def test_failures_spread_beyond_the_window_do_not_open(real_redis: redis.Redis) -> None:
    availability = Availability(real_redis, BreakerPolicy(failure_threshold=2, failure_window_s=0.2))
    assert availability.record_failure(MODEL, "server_error") is False
    wait_out(0.2)
    assert availability.record_failure(MODEL, "server_error") is False  # a new window began
    assert availability.record_failure(MODEL, "server_error") is True


def test_not_found_marks_the_model_down_for_the_long_cooldown(parts) -> None:
    availability, limiter = parts
    availability.mark_down(MODEL, "not_found")
    decision = limiter.acquire(MODEL)
    assert decision.status == "unavailable" and decision.reason == "not_found"
    assert decision.wait_ms > 30_000


def test_each_failed_probe_doubles_the_open_period_up_to_the_cap(parts) -> None:
    availability, limiter = parts
    for _ in range(3):
        availability.record_failure(MODEL, "server_error")
    periods_ms = []
    for _ in range(3):  # open periods: 0.3 s, then 0.6 s, 1.2 s (the cap), 1.2 s
        wait_out(float(availability.state(MODEL)["open_ms"]) / 1000)
        assert limiter.acquire(MODEL).probe
        availability.record_failure(MODEL, "server_error")
        periods_ms.append(int(availability.state(MODEL)["open_ms"]))
    assert periods_ms == [600, 1200, 1200]
    wait_out(1.2)
    assert limiter.acquire(MODEL).probe
    availability.record_success(MODEL)
    assert "open_ms" not in availability.state(MODEL)
    for _ in range(3):  # a new outage starts again from the first period
        availability.record_failure(MODEL, "server_error")
    assert availability.state(MODEL)["open_ms"] == "300"


def test_breaker_policy_from_settings() -> None:
    from genpool.shared.settings import Settings

    settings = Settings.from_env({"GEMINI_API_KEY": "k", "GENPOOL_BREAKER_FAILURES": "3", "GENPOOL_BREAKER_OPEN_S": "10",
                                  "GENPOOL_BREAKER_MAX_OPEN_S": "120", "GENPOOL_NOT_FOUND_OPEN_S": "600"},
                                 dotenv_path=None)
    policy = BreakerPolicy.from_settings(settings)
    assert (policy.failure_threshold, policy.failure_window_s, policy.open_s, policy.max_open_s,
            policy.not_found_open_s) == (3, 30.0, 10.0, 120.0, 600.0)


def test_a_straggler_granted_before_the_opening_does_not_reopen_a_half_open_breaker(parts) -> None:
    availability, limiter = parts
    straggler = limiter.acquire(MODEL)  # a call granted before the outage was known, failing late
    for _ in range(3):
        availability.record_failure(MODEL, "timeout")
    wait_out(OPEN_S)
    assert availability.record_failure(MODEL, "timeout", straggler.now_ms) is True  # open for it: no retry
    assert availability.state(MODEL)["opened_total"] == "1"
    probe = limiter.acquire(MODEL)
    assert probe.probe  # the half-open probe slot is still there
    assert availability.record_failure(MODEL, "timeout", probe.now_ms) is True
    assert availability.state(MODEL)["opened_total"] == "2"
