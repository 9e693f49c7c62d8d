"""One contract for the limiter, held on fakeredis (with lupa) and on a real redis-server.

Times come from Redis's clock (``Decision.now_ms``); where an exact value matters the test replays the
same calls on the Python reference (``strategy.ReferenceWindow``) at the same instants.
"""

from __future__ import annotations

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
from genpool.shared.ratelimit.strategy import ReferenceWindow, spec_for

pytestmark = pytest.mark.integration

MINUTE = ModelLimits(rpm=6, tpm=1000, rpd=100, ipm=2, window_s=60, guard_ms=0)
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
    """Runs each call on Redis and on the reference at Redis's instant; they must agree exactly."""

    def __init__(self, limiter: RedisLimiter, limits: ModelLimits, model: str = MODEL) -> None:
        self.limiter, self.model, self.now_ms = limiter, model, 0
        self.reference = ReferenceWindow(limits, lambda: self.now_ms)

    def acquire(self, max_wait_ms: int = 0, requests: int = 1, tokens: int = 0, images: int = 0) -> Decision:
        got = self.limiter.acquire(self.model, requests=requests, tokens=tokens, images=images,
                                   max_wait_ms=max_wait_ms)
        self.now_ms = got.now_ms
        want = self.reference.acquire((requests, tokens, images), max_wait_ms)
        assert (got.granted, got.delay_ms, got.wait_ms, got.reason) == (
            want.granted, want.delay_ms, want.wait_ms, want.reason)
        return got

    def settle(self, start_ms: int, reserved: int, actual: int) -> None:
        used = self.limiter.settle(self.model, start_ms, reserved, actual)
        self.reference.settle(start_ms, (0, actual - reserved, 0))
        assert used.get("tpm", 0) == self.reference.record.sums[1]


def _limiter(client: redis.Redis, limits: ModelLimits = MINUTE, **kwargs: object) -> RedisLimiter:
    return RedisLimiter(client, {MODEL: limits}, **kwargs)  # type: ignore[arg-type]


def _redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class TestAdmission:
    def test_an_idle_quota_grants_the_whole_window_at_once_then_waits_exactly(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=60, window_s=60, guard_ms=0)
        mirror = Mirror(_limiter(client, limits), limits)
        grants = [mirror.acquire() for _ in range(60)]
        assert all(d.granted and d.delay_ms == 0 for d in grants)
        refused = mirror.acquire()
        spec = spec_for(limits)
        assert refused.status == "wait" and refused.reason == "rpm"
        assert refused.now_ms + refused.wait_ms == spec.free_at_ms(spec.slot_of(grants[0].now_ms))

    def test_lua_agrees_with_reference_on_random_sequences(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=40, tpm=5_000, ipm=6, window_s=0.6, guard_ms=15)
        mirror = Mirror(_limiter(client, limits), limits)
        rnd = random.Random(7)
        for _ in range(200):
            decision = mirror.acquire(max_wait_ms=rnd.choice([0, 0, 30, 400, 3000]),
                                      requests=rnd.choice([0, 1, 1]), tokens=rnd.choice([0, 50, 400, 2000]),
                                      images=rnd.choice([0, 0, 1]))
            time.sleep(rnd.choice([0, 0, 0.002, 0.01, 0.05]))
            if decision.granted and rnd.random() < 0.3:  # the clock moved: settle at an instant we know
                mirror.now_ms = _redis_now_ms(client)
                mirror.settle(decision.start_at_ms, 400, rnd.choice([0, 100, 900]))

    def test_all_or_nothing_across_dimensions(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.acquire(MODEL, tokens=600).granted
        refused = limiter.acquire(MODEL, tokens=600, images=1)
        assert refused.status == "wait" and refused.reason == "tpm"
        assert limiter.levels(MODEL) == {"rpm": 1, "tpm": 600, "ipm": 0, "ahead_ms": 0, "rpd": 99}

    def test_reservations_ahead_start_as_the_oldest_starts_leave_the_window(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=3, window_s=0.5, guard_ms=20)
        mirror = Mirror(_limiter(client, limits), limits)
        first = [mirror.acquire() for _ in range(3)]
        later = [mirror.acquire(max_wait_ms=5000) for _ in range(6)]
        spec = spec_for(limits)
        starts = [d.start_at_ms for d in first + later]
        assert starts == sorted(starts)  # FIFO
        for i in range(3, 9):  # each waits for the one three places ahead of it to leave
            assert starts[i] == max(starts[i - 1], spec.free_at_ms(spec.slot_of(starts[i - 3])))

    def test_a_refusal_takes_nothing(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=2, window_s=60, guard_ms=0))
        first = limiter.acquire(MODEL)
        assert first.granted and limiter.acquire(MODEL).granted
        before = (client.get(keys.model_window(MODEL)), client.hgetall(keys.model_slots(MODEL)))
        refused = limiter.acquire(MODEL, max_wait_ms=10)
        assert refused.status == "wait" and refused.wait_ms > 59_000
        assert (client.get(keys.model_window(MODEL)), client.hgetall(keys.model_slots(MODEL))) == before

    def test_a_cost_above_the_limit_runs_alone(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.acquire(MODEL, tokens=5000).granted  # tpm L' 1000, window empty: one try, alone
        refused = limiter.acquire(MODEL, tokens=1)
        assert refused.reason == "tpm" and refused.wait_ms > 59_000

    def test_unlimited_dimensions_never_wait(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=600, window_s=60))  # tpm, ipm, rpd unlimited
        decisions = [limiter.acquire(MODEL, requests=0, tokens=10**9, images=50) for _ in range(100)]
        assert all(d.granted and d.delay_ms == 0 for d in decisions)
        assert set(limiter.levels(MODEL)) == {"rpm", "ahead_ms"}
        unlimited = RedisLimiter(client, {"free": ModelLimits()})
        assert all(unlimited.acquire("free", tokens=10**9).delay_ms == 0 for _ in range(100))
        assert unlimited.levels("free") == {"ahead_ms": 0}

    def test_a_dimension_that_becomes_limited_knows_what_already_started(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=600, window_s=60))
        assert limiter.acquire(MODEL, images=5).granted  # ipm unlimited: still counted
        limiter.set_limits(MODEL, ipm=6)
        assert limiter.levels(MODEL)["ipm"] == 5
        assert limiter.acquire(MODEL, images=2).reason == "ipm"


class TestSettle:
    def test_settle_refunds_and_charges_in_the_start_slot(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        granted = limiter.acquire(MODEL, tokens=800)
        assert limiter.settle(MODEL, granted.start_at_ms, 800, 300)["tpm"] == 300
        time.sleep(0.11)  # the next start lands in a later 100 ms slot
        assert limiter.acquire(MODEL, tokens=700).granted
        assert limiter.settle(MODEL, granted.start_at_ms, 300, 500)["tpm"] == 1200  # over L': nothing more fits
        assert limiter.acquire(MODEL, tokens=1).status == "wait"
        assert limiter.settle(MODEL, granted.start_at_ms, 10_000, 0)["tpm"] == 700  # never below 0 in a slot

    def test_release_gives_everything_back(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        granted = limiter.acquire(MODEL, tokens=300, images=1)
        used = limiter.release(MODEL, granted.start_at_ms, requests=1, tokens=300, images=1)
        assert used == {"rpm": 0, "tpm": 0, "ipm": 0}
        assert limiter.levels(MODEL)["rpd"] == 100

    def test_a_settle_for_a_start_that_left_the_window_changes_nothing(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(tpm=1000, window_s=0.2, guard_ms=0))
        old = limiter.acquire(MODEL, tokens=100)
        time.sleep(0.25)
        fresh = limiter.acquire(MODEL, tokens=100)
        assert fresh.granted
        assert limiter.settle(MODEL, old.start_at_ms, 100, 900)["tpm"] == 100


class TestPenalize:
    def test_penalize_cools_down_the_fleet_and_fills_the_window(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.acquire(MODEL, tokens=100).granted
        until_ms = limiter.penalize(MODEL, 1000, "rpm")
        used = limiter.levels(MODEL)
        assert used["rpm"] == 6 and used["tpm"] == 100  # only rpm counted as full
        refused = limiter.acquire(MODEL)
        assert refused.status == "wait" and refused.reason == "rpm" and refused.wait_ms > 59_000
        assert limiter.penalize(MODEL, 10) == until_ms  # a shorter cooldown never shortens it

    def test_after_the_cooldown_a_request_starts_no_sooner(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=100, window_s=60, guard_ms=0))
        limiter.penalize(MODEL, 800, "tpm")  # tpm unlimited: nothing to fill, only the cooldown
        refused = limiter.acquire(MODEL)
        assert refused.status == "wait" and refused.reason == "cooldown"
        granted = limiter.acquire(MODEL, max_wait_ms=2000)
        assert granted.granted and granted.reason == "cooldown"
        assert granted.start_at_ms == refused.now_ms + refused.wait_ms

    def test_penalize_day_cools_down_until_pacific_midnight(self, client: redis.Redis) -> None:
        offset = OffsetClock()
        limiter = _limiter(client, utc_offset_ms=offset)
        until_ms = limiter.penalize(MODEL, 1000, "day")
        assert until_ms == next_midnight_ms(_redis_now_ms(client), offset.offset_ms)
        assert limiter.acquire(MODEL).reason == "cooldown"


class TestAvailability:
    def test_unavailable_model_is_refused_without_counting(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        client.hset(keys.model_state(MODEL), mapping={
            "unavailable_until_ms": _redis_now_ms(client) + 10_000, "unavailable_reason": "not_found"})
        refused = limiter.acquire(MODEL, tokens=100)
        assert (refused.status, refused.reason) == ("unavailable", "not_found")
        assert 9000 < refused.wait_ms <= 10_000
        assert limiter.levels(MODEL) == {"rpm": 0, "tpm": 0, "ipm": 0, "ahead_ms": 0, "rpd": 100}

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
        limiter = _limiter(client, ModelLimits(rpd=5, safety=0.99), utc_offset_ms=offset)  # L' = 4
        assert all(limiter.acquire(MODEL).granted for _ in range(4))
        refused = limiter.acquire(MODEL, max_wait_ms=DAY_MS)
        assert (refused.status, refused.reason) == ("wait", "rpd")
        assert refused.now_ms + refused.wait_ms == next_midnight_ms(refused.now_ms, offset.offset_ms)
        offset.offset_ms += DAY_MS  # the day turns
        assert limiter.acquire(MODEL).granted
        assert limiter.levels(MODEL)["rpd"] == 3


class TestLimits:
    def test_unconfigured_model_is_seeded_from_defaults(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.get_limits(MODEL) is None
        assert limiter.acquire(MODEL).granted
        assert limiter.get_limits(MODEL) == MINUTE

    def test_the_catalog_wins_at_start(self, client: redis.Redis) -> None:
        first = _limiter(client, ModelLimits(rpm=1000))
        assert first.acquire(MODEL).granted
        change = _limiter(client, ModelLimits(rpm=60)).sync(MODEL, ModelLimits(rpm=60))
        assert change.changed == {"rpm": (1000, 60)} and change.override == {}
        assert first.get_limits(MODEL) == ModelLimits(rpm=60)
        assert _limiter(client).seed(MODEL, ModelLimits(rpm=9)) is False  # seeding never overwrites

    def test_an_override_stays_on_top_of_the_catalog_until_reset(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=1000, tpm=5000))
        limiter.sync(MODEL, ModelLimits(rpm=1000, tpm=5000))
        assert limiter.set_limits(MODEL, rpm=50) == ModelLimits(rpm=50, tpm=5000)
        restarted = limiter.sync(MODEL, ModelLimits(rpm=2000, tpm=7000))  # a worker starts with a new catalog
        assert restarted.after == ModelLimits(rpm=50, tpm=7000) and restarted.override == {"rpm": "50"}
        assert limiter.reset_limits(MODEL) == ModelLimits(rpm=2000, tpm=7000)
        assert limiter.get_override(MODEL) == {}

    def test_a_runtime_change_takes_effect_on_the_next_acquire(self, client: redis.Redis) -> None:
        worker = _limiter(client)
        assert worker.acquire(MODEL).granted
        _limiter(client).set_limits(MODEL, rpm=1)
        refused = worker.acquire(MODEL)
        assert refused.reason == "rpm" and refused.wait_ms > 59_000

    def test_a_new_window_keeps_what_was_counted(self, client: redis.Redis) -> None:
        limiter = _limiter(client, ModelLimits(rpm=10, window_s=60, guard_ms=0))
        for _ in range(4):
            assert limiter.acquire(MODEL).granted
        limiter.set_limits(MODEL, window_s=30)  # slot size changes: the four stay counted
        assert limiter.levels(MODEL)["rpm"] == 4
        assert sum(limiter.acquire(MODEL).granted for _ in range(10)) == 6

    def test_set_limits_rejects_bad_values(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        with pytest.raises(ConfigError):
            limiter.set_limits(MODEL, rpm=-1)
        with pytest.raises(ConfigError):
            limiter.set_limits(MODEL, rpmm=5)
        assert limiter.get_override(MODEL) == {}

    def test_unknown_model_without_defaults_is_a_config_error(self, client: redis.Redis) -> None:
        with pytest.raises(ConfigError):
            RedisLimiter(client).acquire("nobody-configured-me")


class TestMemory:
    def test_only_live_slots_are_kept_and_the_record_expires_when_idle(self, client: redis.Redis) -> None:
        limits = ModelLimits(rpm=100_000, window_s=0.3, guard_ms=0)  # 300 slots of 1 ms
        limiter = _limiter(client, limits)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert limiter.acquire(MODEL, tokens=5).granted
        fields = client.hlen(keys.model_slots(MODEL))
        assert 0 < fields <= 300 + 2  # one field per live slot (the newest is in the header); older ones are gone
        assert 0 < client.pttl(keys.model_slots(MODEL)) <= 300 + 1000

    def test_a_lost_slots_hash_reads_as_nothing_counted(self, client: redis.Redis) -> None:
        limiter = _limiter(client)
        assert limiter.acquire(MODEL).granted
        client.delete(keys.model_slots(MODEL))  # evicted, or a careless operator
        time.sleep(0.01)
        assert limiter.acquire(MODEL).granted


@pytest.mark.parametrize("make_call", [
    lambda lim: lim.acquire(MODEL, requests=-1),
    lambda lim: lim.penalize(MODEL, 10, "hour"),  # type: ignore[arg-type]
    lambda lim: lim.release(MODEL, 0, tokens=-1),
])
def test_bad_arguments_are_value_errors(fake_redis: redis.Redis,
                                        make_call: Callable[[RedisLimiter], object]) -> None:
    with pytest.raises(ValueError):
        make_call(_limiter(fake_redis))
