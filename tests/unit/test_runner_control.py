"""Runner and the run-time controls, with in-memory fakes: the route a job runs on (version, arm, pinned
across re-runs), budgets (estimate held, actual settled, a spent budget defers or fails), the response cache
(served without a call, the leader stores its answer, a failed leader lets the next lead)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from genpool.shared import errors as e
from genpool.shared.budget import cost_micro
from genpool.shared.jobs import ResultRecord
from genpool.shared.metrics import MetricsBatch, field_name
from genpool.shared.routing import KindRoute, LiveRouting, RoutingTable, Split
from genpool.worker.cache import CachedAnswer, Lead
from genpool.worker.gemini import Turn
from genpool.worker.ports import Later, Ports
from genpool.worker.runner import JobFailed, Runner, RunnerConfig
from tests.unit.test_runner import (
    Decision,
    FakeGateway,
    FakeLimiter,
    FakeResults,
    World,
    envelope_for,
    gen,
)

CHAINS = {"text": ("m1", "m2", "m3"), "chat": ("m1", "m2", "m3"), "json": ("m1", "m2", "m3"), "image": ("img",)}
SPENT = Decision(status="wait", wait_ms=3_600_000, reason="budget")


@dataclass
class MeteredResults(FakeResults):
    metrics: list[MetricsBatch] = field(default_factory=list)

    def save(self, record: ResultRecord, metrics: MetricsBatch, new_turns: list[Turn] | None = None,
             state: bytes | None = None, notify: str | None = None, later: Later | None = None) -> None:
        super().save(record, metrics, new_turns, state, notify)
        self.metrics.append(metrics)

    def counter(self, name: str, **labels: str) -> float:
        return sum(m.counters.get(field_name(name, labels), 0.0) for m in self.metrics)


@dataclass
class FakeCache:
    answer: CachedAnswer | None = None
    wanted_: bool = True
    joined: list[str] = field(default_factory=list)
    published: list[CachedAnswer] = field(default_factory=list)
    abandoned: list[Lead] = field(default_factory=list)

    def wanted(self, request: Any) -> bool:
        return self.wanted_

    def join(self, digest: str, lease_s: float, deadline_at: float) -> CachedAnswer | Lead:
        self.joined.append(digest)
        return self.answer or Lead(digest, "token")

    def publish(self, lead: Lead, answer: CachedAnswer) -> None:
        self.published.append(answer)

    def abandon(self, lead: Lead) -> None:
        self.abandoned.append(lead)


@dataclass
class ControlWorld(World):
    results: MeteredResults = field(default_factory=MeteredResults)
    routing: LiveRouting = field(default_factory=lambda: LiveRouting(table(1)))
    cache: FakeCache | None = None

    def runner(self) -> Runner:
        ports = Ports(gateway=self.gateway, limiter=self.limiter, availability=self.availability,
                      results=self.results, clock=self.time.clock, wall=self.time.wall, sleep=self.time.sleep)
        return Runner(ports, self.catalog, self.config, self.routing, self.cache)  # type: ignore[arg-type]


def table(version: int, **kinds: KindRoute) -> RoutingTable:
    return RoutingTable(version, {kind: kinds.get(kind, KindRoute(chain)) for kind, chain in CHAINS.items()})


# --- routing ------------------------------------------------------------------------------------------


def test_the_record_says_which_routing_version_and_arm_served_it() -> None:
    w = ControlWorld(routing=LiveRouting(table(5, text=KindRoute(("m2", "m3")))))
    record = w.run()
    assert (record.model_used, record.routing_version, record.arm) == ("m2", 5, "control")
    assert w.results.counter("arm_jobs_total", kind="text", arm="control", status="finished") == 1


def test_a_split_job_runs_on_the_candidate_chain() -> None:
    w = ControlWorld(routing=LiveRouting(table(6, text=KindRoute(("m1", "m2"), (Split("m3", 10_000),)))))
    w.gateway.scripts["m3"] = [e.ServerError("503")] * 3  # max_retries 0 for m3: then the chain goes on
    record = w.run()
    assert record.arm == "m3" and record.models_tried == ["m3", "m1"] and record.fallbacks_used == 1
    assert w.results.counter("arm_fallback_jobs_total", kind="text", arm="m3") == 1


def test_a_rerun_keeps_the_route_its_first_run_pinned() -> None:
    w = ControlWorld(routing=LiveRouting(table(9)))
    env = envelope_for()
    w.results.pins[env.job_id] = "3|control|m2"  # its first run started under version 3, on m2
    record = w.run(env, rerun=True)
    assert (record.model_used, record.routing_version) == ("m2", 3)
    assert w.gateway.models_called() == ["m2"]


def test_a_first_run_reads_no_record_and_pins_no_route() -> None:
    """A job that never started before cannot have a record or a pin: no Redis read before its call."""
    w = ControlWorld(routing=LiveRouting(table(4, text=KindRoute(("m3", "m1")))))
    env = envelope_for()
    record = w.run(env, ran_before=False)
    assert record.model_used == "m3" and record.routing_version == 4
    assert w.results.began == [] and env.job_id not in w.results.pins


def test_a_deferred_first_run_pins_the_route_it_resolved() -> None:
    w = ControlWorld(routing=LiveRouting(table(4, text=KindRoute(("m3", "m1")))),
                     limiter=FakeLimiter({m: [Decision(status="wait", wait_ms=9000, reason="rpm")]
                                          for m in ("m3", "m1")}))
    env = envelope_for()
    with pytest.raises(e.Deferred):
        w.run(env, ran_before=False)
    assert w.results.pins[env.job_id] == "4|control|m3,m1"


def test_a_run_that_started_before_finds_its_record_without_a_call() -> None:
    w = ControlWorld()
    env = envelope_for()
    first = w.run(env, ran_before=False)
    again = w.run(env, ran_before=True)
    assert again == first and len(w.gateway.calls) == 1 and w.results.began == [env.job_id]


def test_a_job_naming_its_model_runs_it_first_outside_the_experiment() -> None:
    w = ControlWorld(routing=LiveRouting(table(2, text=KindRoute(("m1", "m2"), (Split("m3", 10_000),)))))
    record = w.run(envelope_for({"kind": "text", "prompt": "hi", "model": "m2"}))
    assert (record.model_used, record.arm) == ("m2", "request")


# --- budgets ------------------------------------------------------------------------------------------


def test_acquire_holds_the_estimate_and_settle_pays_the_actual() -> None:
    w = ControlWorld(gateway=FakeGateway({"m1": [gen(prompt_tokens=10, output_tokens=20)]}))
    w.limiter.decisions["m1"] = [Decision(hold="the-hold")]
    w.run()
    assert w.limiter.costs[0] > 0  # prompt estimate x input price + output estimate x output price
    assert w.limiter.money == [("the-hold", cost_micro(w.catalog.models["m1"], 10, 20))]


def test_a_failed_call_gives_its_hold_back() -> None:
    w = ControlWorld(gateway=FakeGateway({"m1": [e.AuthError("401")]}))
    w.limiter.decisions["m1"] = [Decision(hold="the-hold")]
    with pytest.raises(JobFailed):
        w.run()
    assert w.limiter.money == [("the-hold", 0)]


def test_a_spent_budget_on_the_head_spills_to_the_next_model() -> None:
    w = ControlWorld()
    w.limiter.decisions["m1"] = [SPENT]
    record = w.run()
    assert record.model_used == "m2"
    assert [a.outcome for a in record.attempt_log][0] == "skipped:budget"


def test_every_budget_spent_defers_the_job_until_it_can_run() -> None:
    w = ControlWorld()
    for model in ("m1", "m2", "m3"):
        w.limiter.decisions[model] = [SPENT]
    with pytest.raises(e.BudgetDeferred) as caught:
        w.run()
    assert caught.value.delay_s == pytest.approx(3600.0)
    assert w.gateway.calls == [] and w.results.saved == []


@pytest.mark.parametrize(("job_policy", "kind_policy"), [("fail", "defer"), (None, "fail")])
def test_a_spent_budget_fails_the_job_when_its_policy_says_so(job_policy: str | None, kind_policy: str) -> None:
    w = ControlWorld(config=RunnerConfig(budget_policy=lambda kind: kind_policy))
    for model in ("m1", "m2", "m3"):
        w.limiter.decisions[model] = [SPENT]
    request: dict[str, Any] = {"kind": "text", "prompt": "hi"}
    if job_policy:
        request["on_budget"] = job_policy
    with pytest.raises(JobFailed) as caught:
        w.run(envelope_for(request))
    assert caught.value.record.error is not None and caught.value.record.error.type == "budget_exhausted"
    assert w.gateway.calls == []


def test_budget_held_by_calls_in_flight_is_a_short_ordinary_wait() -> None:
    w = ControlWorld()
    for model in ("m1", "m2", "m3"):
        w.limiter.decisions[model] = [Decision(status="wait", wait_ms=1000, reason="budget_held")]
    with pytest.raises(e.Deferred) as caught:
        w.run()
    assert not isinstance(caught.value, e.BudgetDeferred) and caught.value.delay_s == 1.0


class AlertingLimiter(FakeLimiter):
    def settle(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        super().settle(*args, **kwargs)
        return {"rpm": 3.0, "alert:pool": 80.0}


def test_a_crossed_budget_level_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    w = ControlWorld(limiter=AlertingLimiter())
    w.run()
    assert "budget pool: 80 % of today's budget spent" in caplog.text
    assert w.results.counter("budget_alerts_total", budget="pool", level="80") == 1


# --- the response cache -------------------------------------------------------------------------------

ANSWER = CachedAnswer(job_id="a" * 32, model="m2", bucket="b", key="out/aaaa", finish_reason="STOP",
                      prompt_tokens=5, output_tokens=9, model_version="v-test", cost_usd=0.25, text="cached answer")


def test_a_cached_answer_is_served_without_a_call_and_costs_nothing() -> None:
    w = ControlWorld(cache=FakeCache(answer=ANSWER))
    record = w.run()
    assert w.gateway.calls == [] and w.limiter.acquired == []  # no call, the limiter not charged
    assert (record.cache_hit, record.cost_usd, record.model_used, record.cached_from) == (True, 0.0, "m2", "a" * 32)
    assert record.storage is not None and record.storage.key == "out/aaaa"
    assert w.results.counter("cache_hits_total", kind="text") == 1
    assert w.results.counter("cache_saved_usd_total", kind="text") == 0.25


def test_the_leader_pays_and_stores_its_answer() -> None:
    w = ControlWorld(cache=FakeCache())
    env = envelope_for({"kind": "chat", "messages": [{"role": "user", "text": "hi"}]})
    record = w.run(env)
    assert w.cache is not None and len(w.cache.published) == 1
    stored = w.cache.published[0]
    assert (stored.job_id, stored.model, stored.key, stored.text) == (env.job_id, "m1", f"out/{env.job_id}", "hello")
    assert not record.cache_hit and w.results.counter("cache_misses_total", kind="chat") == 1


@pytest.mark.parametrize("failure", [e.AuthError("401"), e.LimiterUnavailable("down")])
def test_a_leader_that_fails_or_defers_lets_the_next_job_lead(failure: e.GenpoolError) -> None:
    cache = FakeCache()
    w = ControlWorld(cache=cache, gateway=FakeGateway({"m1": [failure]}))
    with pytest.raises((JobFailed, e.Deferred)):
        w.run()
    assert len(cache.abandoned) == 1 and cache.published == []


def test_a_cached_chat_answer_still_extends_the_conversation() -> None:
    w = ControlWorld(cache=FakeCache(answer=ANSWER))
    w.results.histories["c1"] = [("user", "before"), ("model", "then")]
    record = w.run(envelope_for({"kind": "chat", "conversation_id": "c1", "message": "again"}))
    assert record.cache_hit
    assert w.results.saved[-1][1] == [("user", "again"), ("model", "cached answer")]


def test_a_job_that_does_not_want_the_cache_never_asks_it() -> None:
    cache = FakeCache(answer=ANSWER, wanted_=False)
    w = ControlWorld(cache=cache)
    assert not w.run().cache_hit and cache.joined == []
