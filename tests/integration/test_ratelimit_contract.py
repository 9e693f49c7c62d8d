"""One contract for the limiter, held on fakeredis (with lupa) and on a real redis-server.

Times come from Redis's clock (``Decision.now_ms``); where an exact value matters the test replays the
same calls on the Python reference (``strategy.ReferenceBuckets``) at the same instants.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from genpool.shared import keys
from genpool.shared.errors import ConfigError
from genpool.shared.ratelimit import Decision, ModelLimits, RedisLimiter
from genpool.shared.ratelimit.days import DAY_MS, next_midnight_ms, pacific_offset_ms
from genpool.shared.ratelimit.strategy import ReferenceBuckets, specs_for

pytestmark = pytest.mark.integration

MINUTE = ModelLimits(rpm=600, tpm=10_000, rpd=100, ipm=60, window_s=60)  # rpm C 6, tpm C 495, ipm C 1
SLOW = dataclasses.replace(MINUTE, window_s=3600)  # same capacities, refill too slow to blur a level check
MODEL = "gemini-test"


@pytest.fixture(params=["fake_redis", "real_redis"])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


class OffsetClock:
    """An injectable UTC offset, so a test can move the Pacific day without waiting for it."""

    def __init__(self) -> None:
        self.offset_ms = pacific_offset_ms()

    def __call__(self) -> int:
        return self.offset_ms


class Mirror:
    """Runs each acquire on Redis and on the reference at Redis's instant; they must agree exactly."""

    def __init__(self, limiter: RedisLimiter, limits: ModelLimits, model: str = MODEL) -> None:
        self.limiter, self.model, self.now_ms = limiter, model, 0
        self.reference = ReferenceBuckets(limits, lambda: self.now_ms)

    def acquire(self, max_wait_ms: int = 0, requests: int = 1, tokens: int = 0, images: int = 0) -> Decision:
        got = self.limiter.acquire(self.model, requests=requests, tokens=tokens, images=images,
                                   max_wait_ms=max_wait_ms)
        self.now_ms = got.now_ms
        want = self.reference.acquire({"rpm": requests, "tpm": tokens, "ipm": images}, max_wait_ms)
        assert (got.granted, got.delay_ms, got.wait_ms, got.reason) == (
            want.granted, want.delay_ms, want.wait_ms, want.reason)
        return got


def _limiter(client: redis.Redis, limits: ModelLimits = MINUTE, **kwargs: object) -> RedisLimiter:
    return RedisLimiter(client, {MODEL: limits}, **kwargs)  # type: ignore[arg-type]


def _redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class TestLimiterContract:
    def test_grants_within_capacity_then_waits_the_right_time(self, client: redis.Redis) -> None:
        mirror = Mirror(_limiter(client, SLOW), SLOW)
        grants = [mirror.acquire() for _ in range(6)]
        assert all(d.granted and d.delay_ms == 0 for d in grants)
        refused = mirror.acquire()
        assert refused.status == "wait" and refused.reason == "rpm"
        assert 0 < refused.wait_ms <= math.ceil(1 / specs_for(SLOW)["rpm"].rate_per_ms)

    def test_lua_agrees_with_reference_on_random_sequences(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=120, tpm=20_000, ipm=30, window_s=2)
        mirror = Mirror(_limiter(client, limits), limits)
        rnd = random.Random(7)
        for _ in range(120):
            mirror.acquire(max_wait_ms=rnd.choice([0, 0, 30, 400, 3000]), requests=rnd.choice([0, 1, 1]),
                           tokens=rnd.choice([0, 50, 400, 2000]), images=rnd.choice([0, 0, 1]))
            time.sleep(rnd.choice([0, 0, 0.002, 0.01]))

    def test_all_or_nothing_across_dimensions(self, client: redis.Redis) -> None:
        limiter = _limiter(client, SLOW)
        assert limiter.acquire(MODEL, tokens=450).granted
        refused = limiter.acquire(MODEL, tokens=450, images=1)
        assert refused.status == "wait" and refused.reason == "tpm"
        levels = limiter.levels(MODEL)
        assert levels["rpm"] == pytest.approx(5, abs=0.01) and levels["ipm"] == 1  # untouched by the refusal
        assert levels["rpd"] == 98  # L'rpd 99, one counted

    def test_reservations_ahead_are_paced_at_one_over_rate(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=11, window_s=1)  # L' 10, C 1, r = 9 per second
        mirror = Mirror(_limiter(client, limits), limits)
        starts = [mirror.acquire(max_wait_ms=5000).start_at_ms for _ in range(8)]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert all(1000 / 9 - 1 <= gap <= 1000 / 9 + 1 for gap in gaps), gaps

    def test_wait_when_the_reservation_would_be_too_far(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=11, window_s=1)  # slots 1000/9 = 111 ms apart
        limiter = _limiter(client, limits)
        first = limiter.acquire(MODEL)
        assert first.granted and limiter.acquire(MODEL, max_wait_ms=200).granted
        refused = limiter.acquire(MODEL, max_wait_ms=10)  # the third slot is ~222 ms out: nothing taken
        assert refused.status == "wait"
        # two slots of 1000/9 ms; each start is rounded up to a whole ms (C = 1 loses the fraction)
        assert 0 <= refused.now_ms + refused.wait_ms - (first.now_ms + 2000 / 9) <= 2
        third = limiter.acquire(MODEL, max_wait_ms=400)
        assert third.start_at_ms == refused.now_ms + refused.wait_ms

    def test_cost_above_capacity_waits_for_a_full_bucket_then_goes_into_debt(self, client: redis.Redis) -> None:
        limiter = _limiter(client, SLOW)
        rate = specs_for(SLOW)["tpm"].rate_per_ms
        assert limiter.acquire(MODEL, tokens=2000).granted  # C = 495, the bucket was full
        refused = limiter.acquire(MODEL, tokens=10)
        assert refused.reason == "tpm" and refused.wait_ms == pytest.approx((10 + 1505) / rate, rel=0.01)

    def test_settle_refunds_and_charges_tokens(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        refill_per_s = specs_for(MINUTE)["tpm"].rate_per_ms * 1000
        started = time.monotonic()
        assert limiter.acquire(MODEL, tokens=400).granted  # 495 -> 95
        refunded = limiter.settle(MODEL, 400, 100)["tpm"]
        charged = limiter.settle(MODEL, 100, 600)["tpm"]
        slack = refill_per_s * (time.monotonic() - started + 0.005)  # + Redis's whole-ms clock
        assert 395 <= refunded <= 395 + slack
        assert -105 <= charged <= -105 + slack
        assert limiter.settle(MODEL, 5000, 0)["tpm"] == 495  # a refund never overfills

    def test_release_gives_everything_back(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.acquire(MODEL, tokens=300, images=1).granted
        levels = limiter.release(MODEL, requests=1, tokens=300, images=1)
        assert levels == {"rpm": 6, "tpm": 495, "ipm": 1}
        assert limiter.levels(MODEL)["rpd"] == 99

    def test_penalize_cools_down_the_fleet_and_drains(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.acquire(MODEL, tokens=100).granted
        started = time.monotonic()
        until_ms = limiter.penalize(MODEL, 1000, "rpm")
        levels = limiter.levels(MODEL)
        # Redis's clock is read in whole ms inside the scripts: allow a few ms of refill beyond what we timed.
        rpm_slack = specs_for(MINUTE)["rpm"].rate_per_ms * (1000 * (time.monotonic() - started) + 5)
        assert 0 <= levels["rpm"] <= rpm_slack and levels["tpm"] > 390  # only rpm drained
        refused = limiter.acquire(MODEL)
        assert refused.status == "wait" and refused.reason == "cooldown"
        assert refused.now_ms + refused.wait_ms == until_ms
        granted = limiter.acquire(MODEL, max_wait_ms=2000)
        assert granted.granted and granted.reason == "cooldown" and granted.start_at_ms == until_ms
        assert limiter.penalize(MODEL, 10) == until_ms  # a shorter cooldown never shortens it

    def test_penalize_minute_drains_every_bucket(self, client: redis.Redis) -> None:
        limiter = _limiter(client, SLOW)
        assert limiter.acquire(MODEL).granted
        limiter.penalize(MODEL, 0, "minute")
        assert all(level < 0.1 for dim, level in limiter.levels(MODEL).items() if dim != "rpd")

    def test_penalize_day_cools_down_until_pacific_midnight(self, client: redis.Redis) -> None:
        offset = OffsetClock()
        limiter = _limiter(client, utc_offset_ms=offset)
        until_ms = limiter.penalize(MODEL, 1000, "day")
        assert until_ms == next_midnight_ms(_redis_now_ms(client), offset.offset_ms)
        assert limiter.acquire(MODEL).reason == "cooldown"

    def test_unavailable_model_is_refused_without_debit(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        client.hset(keys.model_state(MODEL), mapping={
            "unavailable_until_ms": _redis_now_ms(client) + 10_000, "unavailable_reason": "not_found"})
        refused = limiter.acquire(MODEL, tokens=100)
        assert (refused.status, refused.reason) == ("unavailable", "not_found")
        assert 9000 < refused.wait_ms <= 10_000
        assert limiter.levels(MODEL) == {"rpm": 6, "tpm": 495, "ipm": 1, "rpd": 99}

    def test_half_open_lets_exactly_one_probe_through(self, client: redis.Redis) -> None:
        limiter = _limiter(client, probe_ms=5000)
        client.hset(keys.model_state(MODEL), mapping={"half_open": "1", "probe_until_ms": "0"})
        barrier = threading.Barrier(12)

        def one(_: int) -> Decision:
            barrier.wait()
            return limiter.acquire(MODEL, max_wait_ms=10_000)

        with ThreadPoolExecutor(12) as pool:
            decisions = list(pool.map(one, range(12)))
        probes = [d for d in decisions if d.granted]
        assert len(probes) == 1 and probes[0].probe and probes[0].reason == "probe"
        assert all(d.status == "unavailable" and d.reason == "probing" for d in decisions if not d.granted)

    def test_expired_probe_slot_goes_to_the_next_caller(self, client: redis.Redis) -> None:
        limiter = _limiter(client, probe_ms=300)
        client.hset(keys.model_state(MODEL), mapping={"half_open": "1", "probe_until_ms": "0"})
        assert limiter.acquire(MODEL).probe
        assert limiter.acquire(MODEL).reason == "probing"
        time.sleep(0.31)
        assert limiter.acquire(MODEL).probe

    def test_requests_per_day_wait_for_pacific_midnight(self, client: redis.Redis) -> None:
        offset = OffsetClock()
        limits = ModelLimits(rpd=5)  # L' = 4
        limiter = _limiter(client, limits, utc_offset_ms=offset)
        assert all(limiter.acquire(MODEL).granted for _ in range(4))
        refused = limiter.acquire(MODEL, max_wait_ms=DAY_MS)
        assert (refused.status, refused.reason) == ("wait", "rpd")
        assert refused.now_ms + refused.wait_ms == next_midnight_ms(refused.now_ms, offset.offset_ms)
        offset.offset_ms += DAY_MS  # the day turns
        assert limiter.acquire(MODEL).granted
        assert limiter.levels(MODEL)["rpd"] == 3

    def test_unconfigured_model_is_seeded_from_defaults(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.get_limits(MODEL) is None
        assert limiter.acquire(MODEL).granted
        assert limiter.get_limits(MODEL) == MINUTE

    def test_seed_keeps_an_operators_runtime_change(self, client: redis.Redis) -> None:
        _limiter(client).set_limits(MODEL, rpm=50)
        restarted = _limiter(client, ModelLimits(rpm=9999))
        assert restarted.seed(MODEL, ModelLimits(rpm=9999)) is False
        assert restarted.acquire(MODEL).granted
        assert restarted.get_limits(MODEL) == ModelLimits(**{**MINUTE.__dict__, "rpm": 50})

    def test_unknown_model_without_defaults_is_a_config_error(self, client: redis.Redis) -> None:
        with pytest.raises(ConfigError):
            RedisLimiter(client).acquire("nobody-configured-me")

    def test_runtime_set_limits_takes_effect_on_the_next_acquire(self, client: redis.Redis) -> None:
        worker = _limiter(client)
        assert worker.acquire(MODEL).granted
        _limiter(client).set_limits(MODEL, rpm=2, window_s=6)  # L' 1, C 1: one per 6 s
        assert worker.acquire(MODEL).granted  # the level is clamped to the new capacity, 1
        refused = worker.acquire(MODEL)
        assert refused.reason == "rpm" and 5000 <= refused.wait_ms <= 6000

    def test_a_dimension_that_becomes_limited_starts_full(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=600, ipm=60))
        assert limiter.acquire(MODEL, images=1).granted  # ipm C = 1: now empty
        limiter.set_limits(MODEL, ipm=0)  # unlimited for a while, requests keep coming
        assert limiter.acquire(MODEL, images=5).granted and "ipm" not in limiter.levels(MODEL)
        limiter.set_limits(MODEL, ipm=6000, window_s=3600)  # limited again: L' 5940, C 60
        assert limiter.levels(MODEL)["ipm"] == 60  # full, not the empty level it had before

    def test_set_limits_rejects_bad_values(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        with pytest.raises(ConfigError):
            limiter.set_limits(MODEL, rpm=-1)
        with pytest.raises(ConfigError):
            limiter.set_limits(MODEL, rpmm=5)

    def test_unlimited_dimensions_never_wait(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=600, window_s=60))  # tpm, ipm, rpd unlimited
        decisions = [limiter.acquire(MODEL, requests=0, tokens=10**9, images=50) for _ in range(100)]
        assert all(d.granted and d.delay_ms == 0 for d in decisions)
        assert set(limiter.levels(MODEL)) == {"rpm"}
        unlimited = RedisLimiter(client, {"free": ModelLimits()})
        assert all(unlimited.acquire("free", tokens=10**9).delay_ms == 0 for _ in range(100))
        assert unlimited.levels("free") == {}


@pytest.mark.parametrize("make_call", [
    lambda lim: lim.acquire(MODEL, requests=-1),
    lambda lim: lim.penalize(MODEL, 10, "hour"),  # type: ignore[arg-type]
])
def test_bad_arguments_are_value_errors(fake_redis: redis.Redis,
                                        make_call: Callable[[RedisLimiter], object]) -> None:
    with pytest.raises(ValueError):
        make_call(_limiter(fake_redis))
