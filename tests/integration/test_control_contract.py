"""The run-time controls' Lua, held to one contract on fakeredis (with lupa) and on a real redis-server:
budgets in acquire / settle against their Python twin (shared/budget.ReferenceBudget), the routing's one
writer (shared/lua/routing.lua), and the response cache's single flight (worker/lua/cache_*.lua)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from genpool.shared import keys
from genpool.shared.budget import (
    EXHAUSTED,
    HELD,
    HELD_WAIT_MS,
    POOL,
    BudgetRecord,
    ReferenceBudget,
    check,
)
from genpool.shared.catalog import parse_catalog
from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.budgets import BudgetStore, BudgetView
from genpool.shared.ratelimit.days import DAY_MS, day_index, next_midnight_ms
from genpool.shared.routing import RoutingStore, Split
from genpool.worker.cache import CachedAnswer, Lead, ResponseCache
from tests.integration.test_ratelimit_contract import OffsetClock

pytestmark = pytest.mark.integration

MODEL = "gemini-test"
HUGE = ModelLimits(rpm=10**9, tpm=10**12, rpd=10**9, ipm=10**9)  # the window never binds: budgets decide


@pytest.fixture(params=["fake_redis", "real_redis"])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


class Budgets:
    """A limiter with budgets set through the operator's store, and the twin of each budget."""

    def __init__(self, client: redis.Redis, limits: dict[str, int], offset: OffsetClock | None = None) -> None:
        self.client, self.offset = client, offset or OffsetClock()
        self.view = BudgetView()
        self.limiter = RedisLimiter(client, {MODEL: HUGE}, utc_offset_ms=self.offset, budgets=self.view)
        self.store = BudgetStore(client, utc_offset_ms=self.offset())
        self.now_ms = 0
        self.twins = {scope: ReferenceBudget(0, lambda: self.now_ms, self.offset()) for scope in limits}
        for scope, limit in limits.items():
            self.set(scope, limit)

    def set(self, scope: str, limit: int) -> None:
        self.now_ms = self.store.now_ms()
        self.store.set(scope, limit)
        self.twins[scope].set(limit)
        self.view.update(*self.store.registry())

    def record(self, scope: str) -> BudgetRecord:
        key = keys.pool_budget() if scope == POOL else keys.model_budget(scope)
        return BudgetRecord.from_hash(self.client.hgetall(key))

    def agree(self) -> None:
        for scope, twin in self.twins.items():
            assert self.record(scope) == twin.record, scope


def _now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class TestBudgets:
    def test_lua_agrees_with_the_twin_on_random_sequences(self, client: redis.Redis) -> None:
        b = Budgets(client, {MODEL: 20_000, POOL: 30_000})
        rnd, open_holds, seen = random.Random(16), [], set()
        for step in range(300):
            if open_holds and rnd.random() < 0.45:
                decision = open_holds.pop(rnd.randrange(len(open_holds)))
                actual = rnd.choice([0, 100, 400, 900, 2500])
                used = b.limiter.settle(MODEL, decision.start_at_ms, 10, 10, hold=decision.hold, actual_micro=actual)
                b.now_ms = _now_ms(client)
                want = {f"alert:{scope}": float(level) for scope, twin in b.twins.items()
                        if (level := twin.settle(decision.hold.micro, actual))}
                assert {k: v for k, v in used.items() if k.startswith("alert:")} == want
            elif step % 97 == 96:
                b.set(POOL, rnd.choice([0, 15_000, 40_000]))
            else:
                cost = rnd.choice([50, 300, 800, 4000])
                decision = b.limiter.acquire(MODEL, tokens=10, cost_micro=cost)
                b.now_ms = decision.now_ms
                budgets = [twin for scope, twin in b.twins.items() if scope in (b.view.keys_for(MODEL)[1])]
                verdict, wait_ms = check(budgets, decision.now_ms, b.offset())
                assert (decision.reason, decision.wait_ms) == (verdict, wait_ms)
                seen.add(decision.reason)
                if decision.granted:
                    for twin in budgets:
                        twin.hold(cost)
                    open_holds.append(decision)
            b.agree()
        assert seen == {"", HELD, EXHAUSTED}  # the sequence went through every verdict

    def test_a_refusal_holds_and_counts_nothing(self, client: redis.Redis) -> None:
        b = Budgets(client, {MODEL: 1000})
        first = b.limiter.acquire(MODEL, tokens=10, cost_micro=600)
        b.limiter.settle(MODEL, first.start_at_ms, 10, 10, hold=first.hold, actual_micro=1000)
        before = (b.record(MODEL), b.limiter.levels(MODEL))
        refused = b.limiter.acquire(MODEL, tokens=10, cost_micro=1)
        assert (refused.status, refused.reason, refused.hold) == ("wait", EXHAUSTED, None)
        assert (b.record(MODEL), b.limiter.levels(MODEL)) == before

    def test_a_spent_budget_waits_for_pacific_midnight_and_the_new_day_starts_over(self, client: redis.Redis) -> None:
        offset = OffsetClock()
        b = Budgets(client, {POOL: 500}, offset)
        granted = b.limiter.acquire(MODEL, cost_micro=200)
        b.limiter.settle(MODEL, granted.start_at_ms, 0, 0, hold=granted.hold, actual_micro=500)
        refused = b.limiter.acquire(MODEL, cost_micro=200)
        assert refused.reason == EXHAUSTED
        assert refused.now_ms + refused.wait_ms == next_midnight_ms(refused.now_ms, offset())
        offset.offset_ms += DAY_MS  # the Pacific day turns
        assert b.limiter.acquire(MODEL, cost_micro=200).granted
        assert b.record(POOL).day == day_index(refused.now_ms, offset()) and b.record(POOL).held == 200

    def test_calls_in_flight_holding_the_rest_wait_briefly_and_a_refund_reopens(self, client: redis.Redis) -> None:
        b = Budgets(client, {MODEL: 1000})
        first = b.limiter.acquire(MODEL, cost_micro=700)
        second = b.limiter.acquire(MODEL, cost_micro=700)  # spent 0 + held 700 < 1000: it may start
        held = b.limiter.acquire(MODEL, cost_micro=10)
        assert (held.reason, held.wait_ms) == (HELD, HELD_WAIT_MS)
        b.limiter.settle(MODEL, first.start_at_ms, 0, 0, hold=first.hold, actual_micro=100)  # cheaper than held
        b.limiter.settle(MODEL, second.start_at_ms, 0, 0, hold=second.hold, actual_micro=0)  # a failed call
        assert b.limiter.acquire(MODEL, cost_micro=10).granted
        assert (b.record(MODEL).spent, b.record(MODEL).held) == (100, 10)

    def test_with_no_budget_set_acquire_touches_no_budget(self, client: redis.Redis) -> None:
        limiter = RedisLimiter(client, {MODEL: HUGE}, budgets=BudgetView())
        decision = limiter.acquire(MODEL, cost_micro=500)
        assert decision.granted and decision.hold is None
        assert limiter.settle(MODEL, decision.start_at_ms, 0, 0, decision.hold, 500) == {"rpm": 1, "tpm": 0, "ipm": 0}
        assert client.keys("*budget*") == []

    def test_each_alert_level_is_reported_once_across_threads(self, client: redis.Redis) -> None:
        b = Budgets(client, {MODEL: 10_000})
        alerts: list[str] = []
        lock = threading.Lock()

        def spend(_: int) -> None:
            for _ in range(6):
                d = b.limiter.acquire(MODEL, cost_micro=100)
                if d.granted:
                    used = b.limiter.settle(MODEL, d.start_at_ms, 0, 0, hold=d.hold, actual_micro=150)
                    with lock:
                        alerts.extend(f"{k}={v:g}" for k, v in used.items() if k.startswith("alert:"))

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(spend, range(12)))
        assert sorted(alerts) == [f"alert:{MODEL}=100", f"alert:{MODEL}=50", f"alert:{MODEL}=80"]
        assert b.record(MODEL).spent >= 10_000 and b.limiter.acquire(MODEL, cost_micro=1).reason == EXHAUSTED

    def test_a_budget_set_mid_day_counts_what_the_metrics_counted_today(self, client: redis.Redis) -> None:
        store = BudgetStore(client)
        today = day_index(store.now_ms(), store.offset_ms())
        client.hset(keys.spend_day(today), mapping={MODEL: 700, "other-model": 300})
        assert store.set(MODEL, 1000).spent == 700
        assert store.set(POOL, 5000).spent == 1000
        assert store.registry() == (2, {MODEL: 1000, POOL: 5000})
        store.set(MODEL, 0)
        assert store.registry() == (3, {POOL: 5000})


CATALOG = parse_catalog({
    "models": {"a": {}, "b": {}, "c": {}, "img": {"kind": "image"}, "img2": {"kind": "image"}},
    "chains": {"text": ["a", "b"], "chat": ["a"], "json": ["a"], "image": ["img"]},
})


class TestRouting:
    def test_the_catalog_at_start_the_override_on_top_until_rollback(self, client: redis.Redis) -> None:
        store = RoutingStore(client, CATALOG)
        first = store.sync()
        assert first.before is None and first.after.version == 1 and first.after.kinds["text"].chain == ("a", "b")
        assert not store.sync().changed  # a restart with the same catalog: no new version
        assert store.set_chain("text", ("b", "c")).after.version == 2
        assert store.set_splits("image", (Split("img2", 1000),)).after.kinds["image"].splits == (Split("img2", 1000),)
        other = RoutingStore(client, parse_catalog({**_catalog_dict(), "chains": {
            "text": ["c"], "chat": ["a"], "json": ["a"], "image": ["img"]}}))
        restarted = other.sync()  # a worker with another catalog: the override stays on top
        assert not restarted.changed and restarted.after.kinds["text"].chain == ("b", "c")
        assert store.override() == {"chain:text": "b,c", "split:image": "img2=1000"}
        back = store.rollback(["text", "image"])
        assert back.after.kinds["text"].chain == ("c",)  # the catalog of the last worker to start
        assert back.after.kinds["image"].splits == () and back.after.version == 4 and store.version() == 4
        assert store.read() == back.after


def _catalog_dict() -> dict[str, object]:
    return {"models": {"a": {}, "b": {}, "c": {}, "img": {"kind": "image"}, "img2": {"kind": "image"}}}


class TestCacheSingleFlight:
    def test_one_leads_the_others_wait_then_are_served(self, client: redis.Redis) -> None:
        cache = ResponseCache(client, ttl_s=60, default="off", clock=lambda: 0.0, sleep=lambda s: None)
        lead = cache.join("d1", lease_s=30, deadline_at=10.0)
        assert isinstance(lead, Lead)
        state, pttl = cache._call(cache._join, "d1", "other", 30_000)
        assert state == b"wait" and 0 < int(pttl) <= 30_000
        answer = CachedAnswer("j" * 32, "m", "b", "k", "STOP", 1, 2, "v", 0.5)
        cache.publish(lead, answer)
        assert cache.join("d1", lease_s=30, deadline_at=10.0) == answer
        assert client.ttl(keys.cache_entry("d1")) > 0 and not client.exists(keys.cache_lead("d1"))

    def test_a_failed_leader_hands_over_and_a_lapsed_lease_is_not_released_by_its_old_owner(
            self, client: redis.Redis) -> None:
        cache = ResponseCache(client, ttl_s=60, default="off", clock=lambda: 0.0, sleep=lambda s: None)
        first = cache.join("d2", lease_s=30, deadline_at=10.0)
        assert isinstance(first, Lead)
        cache.abandon(first)
        second = cache.join("d2", lease_s=30, deadline_at=10.0)
        assert isinstance(second, Lead) and second.token != first.token
        cache.abandon(first)  # the first leader's late release must not free the second's lease
        assert client.get(keys.cache_lead("d2")) == second.token.encode()
