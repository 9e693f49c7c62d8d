"""acquire_fast.lua and settle_fast.lua: what they answer is the general path's answer, to the byte stored.

Two fakeredis servers (lupa) on one frozen clock run the same calls: one with acquire as shipped (fast path
first), one with the general paths alone. Every reply and every key of the model must be the same after each
call, through grants, queued grants, refusals, settles (refunds, charges) and releases, expiry, new slots, lost slots, 429 cooldowns, a breaker's probe
and the day counter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import NamedTuple

import fakeredis
import pytest
import redis

from genpool.shared import keys
from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.scripts import source

MODEL = "gemini-fast"
LIMITS = ModelLimits(rpm=20, tpm=3_000, ipm=3, rpd=45, window_s=2, guard_ms=100)
PACIFIC_OFFSET_MS = -28_800_000
DAY_MS = 86_400_000
FAST_ONLY_TAIL = "\nreturn 'handed over'"


class FrozenClock:
    """Redis's TIME on fakeredis (it reads time.time()), moved by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now_s = 1_800_000_000.0
        monkeypatch.setattr(time, "time", lambda: self.now_s)

    def advance_ms(self, ms: float) -> None:
        self.now_s += ms / 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    return FrozenClock(monkeypatch)


@pytest.fixture
def pair() -> Iterator[tuple[RedisLimiter, RedisLimiter, redis.Redis, redis.Redis]]:
    shipped = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    general = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    fast = RedisLimiter(shipped, {MODEL: LIMITS}, utc_offset_ms=lambda: PACIFIC_OFFSET_MS)
    slow = RedisLimiter(general, {MODEL: LIMITS}, utc_offset_ms=lambda: PACIFIC_OFFSET_MS)
    slow._scripts = replace(slow._scripts, acquire=general.register_script(source("acquire", fast_path=False)),
                            settle=general.register_script(source("settle", fast_path=False)))
    yield fast, slow, shipped, general
    shipped.close()
    general.close()


def _model_keys(client: redis.Redis) -> dict[str, object]:
    return {"window": client.get(keys.model_window(MODEL)), "slots": client.hgetall(keys.model_slots(MODEL)),
            "state": client.hgetall(keys.model_state(MODEL)), "slots_ttl": client.pttl(keys.model_slots(MODEL))}


def _probe(client: redis.Redis, now_ms: int) -> None:
    client.hset(keys.model_state(MODEL), mapping={"half_open": "1", "probe_until_ms": now_ms - 1})


def _close(client: redis.Redis) -> None:
    """The probe answered: the breaker closes (``record_success``'s effect on the fields acquire reads)."""
    client.hdel(keys.model_state(MODEL), "half_open", "probe_until_ms")


def _happen(rnd: random.Random, clock: FrozenClock, limiters: tuple[RedisLimiter, ...],
            clients: tuple[redis.Redis, ...]) -> None:
    """Now and then, on both servers alike: a 429, a day turning, slots lost, a breaker opening, probing or
    closing."""
    event, now_ms = rnd.random(), int(clock.now_s * 1000)
    if event < 0.05:
        retry_after_ms, scope = rnd.choice([50, 400, 1500]), rnd.choice(["minute", "tpm", "ipm"])
        for limiter in limiters:
            limiter.penalize(MODEL, retry_after_ms, scope)  # type: ignore[arg-type]
    elif event < 0.06:
        clock.advance_ms(DAY_MS)  # the next Pacific day: the day counter starts again
    elif event < 0.07:  # just before Pacific midnight: the day turns while the window is live
        clock.advance_ms(DAY_MS - (now_ms + PACIFIC_OFFSET_MS) % DAY_MS - 30)
    elif event < 0.09:  # the slots hash lost (evicted): only the header's newest slot is left to trust
        for client in clients:
            client.delete(keys.model_slots(MODEL))
    elif event < 0.22:
        for client in clients:
            _breaker(client, event, now_ms)


def _breaker(client: redis.Redis, event: float, now_ms: int) -> None:
    if event < 0.10:
        _probe(client, now_ms)
    elif event < 0.11:  # open for a while
        client.hset(keys.model_state(MODEL), mapping={"unavailable_until_ms": now_ms + 300,
                                                      "unavailable_reason": "breaker_open"})
    else:
        _close(client)


class Grant(NamedTuple):
    start_ms: int
    requests: int
    tokens: int
    images: int


def _correct(rnd: random.Random, grant: Grant, limiters: tuple[RedisLimiter, RedisLimiter]) -> None:
    """A settle (a refund, a charge, or none) or a release of an earlier grant, on both: the same answer."""
    fast, slow = limiters
    if rnd.random() < 0.2:
        replies = [limiter.release(MODEL, grant.start_ms, grant.requests, grant.tokens, grant.images)
                   for limiter in limiters]
    else:
        actual = rnd.choice([0, grant.tokens // 2, grant.tokens + 37, grant.tokens * 2])
        reserved = grant.tokens * rnd.choice([1, 1, 3])  # 3: a refund beyond what the slot holds stops at 0
        replies = [limiter.settle(MODEL, grant.start_ms, reserved, actual) for limiter in limiters]
    assert replies[0] == replies[1], grant


def test_the_fast_path_stores_and_answers_what_the_general_path_does(
        clock: FrozenClock, pair: tuple[RedisLimiter, RedisLimiter, redis.Redis, redis.Redis]) -> None:
    fast, slow, shipped, general = pair
    rnd = random.Random(17)
    grants: list[Grant] = []
    for step in range(800):
        clock.advance_ms(rnd.choice([0, 0, 1, 3, 20, 150, 700, 2500]))
        _happen(rnd, clock, (fast, slow), (shipped, general))
        costs = {"requests": rnd.choice([0, 1, 1, 1]), "tokens": rnd.choice([0, 40, 200, 900]),
                 "images": rnd.choice([0, 0, 1]), "max_wait_ms": rnd.choice([0, 0, 50, 600, 3000])}
        got, want = fast.acquire(MODEL, **costs), slow.acquire(MODEL, **costs)
        assert got == want, f"step {step}: {costs}"
        assert _model_keys(shipped) == _model_keys(general), f"step {step}: {costs} -> {got}"
        if got.granted:
            grants.append(Grant(got.start_at_ms, costs["requests"], costs["tokens"], costs["images"]))
        if grants and rnd.random() < 0.6:
            _correct(rnd, rnd.choice(grants[-12:]), (fast, slow))
            assert _model_keys(shipped) == _model_keys(general), f"step {step}: after a settle or release"


def test_the_common_grant_returns_from_the_fast_path(
        clock: FrozenClock, pair: tuple[RedisLimiter, RedisLimiter, redis.Redis, redis.Redis]) -> None:
    fast, _, shipped, _ = pair
    assert fast.acquire(MODEL, tokens=10).granted  # seeds the limits and starts the record
    fast_only = shipped.register_script(source("acquire", fast_path=True).split("\n-- Shared by every")[0]
                                        + FAST_ONLY_TAIL)
    limits_key, window_key, state_key, slots_key = (keys.model_limits(MODEL), keys.model_window(MODEL),
                                                    keys.model_state(MODEL), keys.model_slots(MODEL))
    args = [1, 10, 0, 0, PACIFIC_OFFSET_MS, 30_000]
    reply = fast_only(keys=[limits_key, window_key, state_key, slots_key], args=args)
    assert reply.startswith(b"granted|0|0|")
    clock.advance_ms(10)
    _probe(shipped, int(clock.now_s * 1000))  # a probe is the general path's to grant
    window_before = shipped.get(window_key)
    assert fast_only(keys=[limits_key, window_key, state_key, slots_key], args=args) == b"handed over"
    assert shipped.get(window_key) == window_before  # handed over before writing anything
