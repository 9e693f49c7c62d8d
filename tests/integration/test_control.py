"""Changing models and spending at run time, on the real stack (redis-server, S3 server, simulator, worker
processes): live chains and rollback, an A/B split, budgets, and the response cache. The simulator's request
counts are the proof of what was paid for."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from genpool.shared import keys
from genpool.shared.budget import cost_micro
from genpool.shared.catalog import load_catalog
from genpool.shared.settings import Settings
from tests.integration.test_fallback import PRIMARY, SECOND, THIRD, logs_hint, requests_to, write_catalog
from tests.integration.test_ops import genpool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOMY = {"rpm": 100_000, "tpm": 100_000_000, "rpd": 0}  # the quota never binds: routing alone decides


def _redis_ms(stack) -> int:
    seconds, micros = stack.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _cli(stack, *args: str) -> str:
    out = genpool(stack.env, *args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def _start(stack, workers: int = 2, concurrency: int = 32, **catalog: dict[str, Any]) -> None:
    write_catalog(stack, {PRIMARY: ROOMY, SECOND: ROOMY, THIRD: ROOMY, **catalog})
    stack.workers.start(workers, concurrency=concurrency)
    record = stack.pool.submit({"kind": "text", "prompt": "warm up"}).wait(timeout_s=60)
    assert record.status == "finished", (record.error, logs_hint(stack))


def _first_start_ms(record) -> int:
    return min(a.start_ms for a in record.attempt_log if a.attempt)


def _spec(stack, model: str):
    """The model as the workers' catalog (the test's copy, GENPOOL_MODELS_FILE) has it."""
    return load_catalog(Settings.from_env(stack.env, dotenv_path=None)).models[model]


def _spent_today(stack) -> int:
    return sum(int(v) for key in stack.redis.keys("genpool:spend:*") for v in stack.redis.hvals(key))


def _version(stack) -> int:
    return int(json.loads(_cli(stack, "models", "show", "--json"))["version"])


# --- live chains ---------------------------------------------------------------------------------------


def test_a_chain_switch_with_200_jobs_in_flight_loses_nothing_and_rollback_restores_the_catalog(stack):
    _start(stack, workers=2, concurrency=128)
    old = _version(stack)
    stack.sim.models({m: {"latency_ms": 2500, "jitter_ms": 0} for m in (PRIMARY, SECOND, THIRD)})
    in_flight = stack.pool.submit_many([{"kind": "text", "prompt": f"in flight {i}"} for i in range(200)])
    deadline = time.monotonic() + 60
    while requests_to(stack, PRIMARY) < 201 and time.monotonic() < deadline:  # all 200 calls under way
        time.sleep(0.05)

    _cli(stack, "models", "set-chain", "text", f"{SECOND},{THIRD}")
    switched_ms, new = _redis_ms(stack), _version(stack)
    assert new == old + 1
    soon = stack.pool.submit_many([{"kind": "text", "prompt": f"right after the switch {i}"} for i in range(50)])
    time.sleep(2.0)
    later = stack.pool.submit_many([{"kind": "text", "prompt": f"2 s after the switch {i}"} for i in range(50)])
    records = stack.pool.wait_all(in_flight + soon + later, timeout_s=180)
    assert all(r is not None and r.status == "finished" for r in records), logs_hint(stack)  # nothing lost

    assert {(r.routing_version, r.model_used) for r in records[:200]} == {(old, PRIMARY)}  # kept their chain
    chains = {old: {PRIMARY, SECOND, THIRD}, new: {SECOND, THIRD}}
    for r in records[200:]:
        assert r.routing_version in chains and set(r.models_tried) <= chains[r.routing_version], r
        if r in records[250:] or _first_start_ms(r) >= switched_ms + 2000:  # new jobs: the new chain within 2 s
            assert (r.routing_version, r.model_used) == (new, SECOND), r
    on_old = sum(r.routing_version == old for r in records)
    assert requests_to(stack, PRIMARY) == on_old + 1  # the paid calls: one per job, on its own chain (+ warm-up)
    assert requests_to(stack, SECOND) == len(records) - on_old
    assert f"routing v{new} in force: text {SECOND},{THIRD}" in stack.workers.logs()

    shown = json.loads(_cli(stack, "models", "show", "--json"))["kinds"]["text"]
    assert shown["chain"] == [SECOND, THIRD] and shown["catalog"] == [PRIMARY, SECOND, THIRD]
    assert json.loads(_cli(stack, "stats", "--json"))["routing"]["kinds"]["text"]["override"]["chain"] == [
        SECOND, THIRD]

    stack.sim.models({m: {"latency_ms": 5, "jitter_ms": 2} for m in (PRIMARY, SECOND, THIRD)})
    _cli(stack, "models", "rollback", "text")
    back = _version(stack)
    assert back == new + 1
    assert json.loads(_cli(stack, "models", "show", "--json"))["kinds"]["text"]["chain"] == [PRIMARY, SECOND, THIRD]
    time.sleep(2.0)
    restored = stack.pool.wait_all(stack.pool.submit_many([{"kind": "text", "prompt": f"rolled back {i}"}
                                                           for i in range(20)]), timeout_s=60)
    assert {(r.routing_version, r.model_used) for r in restored} == {(back, PRIMARY)}


def test_a_ten_percent_split_over_2000_jobs(stack):
    _start(stack)
    _cli(stack, "models", "split", "text", f"{THIRD}=10")
    time.sleep(1.5)  # every worker has polled the new version (0.5 s apart)
    stack.sim.reset()
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"split {i}"} for i in range(2000)])
    records = stack.pool.wait_all(handles, timeout_s=240)
    assert all(r is not None and r.status == "finished" for r in records), logs_hint(stack)

    arms = [r.arm for r in records]
    share = arms.count(THIRD) / len(records)
    assert 0.08 <= share <= 0.12, share
    assert set(arms) == {"control", THIRD}
    assert requests_to(stack, THIRD) == arms.count(THIRD)  # each candidate job paid one call, on the candidate
    assert requests_to(stack, PRIMARY) == arms.count("control")
    for r in records:
        assert r.model_used == (THIRD if r.arm == THIRD else PRIMARY)

    by_arm = json.loads(_cli(stack, "stats", "--json"))["arms"]["text"]
    assert by_arm[THIRD]["jobs"] == arms.count(THIRD)
    assert by_arm["control"]["jobs"] == arms.count("control") + 1  # + the warm-up
    assert by_arm[THIRD]["fallback_rate"] == 0 and by_arm[THIRD]["cost_per_job_usd"] > 0
    assert "vs_control" in by_arm[THIRD]
    table = _cli(stack, "stats", "--by-arm")
    assert THIRD in table and "control" in table
    from genpool.ops.prometheus import RedisCollector

    catalog = load_catalog(Settings.from_env(stack.env, dotenv_path=None))
    families = {f.name: f for f in RedisCollector(stack.redis, catalog.models, None, catalog).collect()}
    arm_labels = {s.labels["arm"] for s in families["genpool_arm_jobs"].samples}
    assert arm_labels == {"control", THIRD}
    assert families["genpool_routing_split_percent"].samples[0].value == 10.0


# --- budgets -------------------------------------------------------------------------------------------

PRICED = {"price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0}  # whole micro-USD per token
SAME = {"kind": "text", "prompt": "the same job, the same cost"}


def _parked(stack) -> int:
    return int(stack.redis.zcard(keys.budget_parked()))


def _wait_for(predicate, timeout_s: float, what, stack) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what()}\n{logs_hint(stack)}"
        time.sleep(0.1)


def test_a_budget_of_n_jobs_stops_paid_calls_at_n_and_raising_it_resumes_the_rest(stack):
    stack.env["GEMINI_ENABLE_FALLBACK"] = "false"  # one model: its budget is the only way to run
    _start(stack, workers=2, concurrency=8, **{PRIMARY: {**ROOMY, **PRICED}})
    warm = stack.pool.submit(SAME).wait(timeout_s=30)  # what one such job costs, in the budget's units
    per_job = cost_micro(_spec(stack, PRIMARY), warm.prompt_tokens, warm.output_tokens)
    spent_so_far = _spent_today(stack)
    n, extra = 12, 8
    limit = spent_so_far + n * per_job
    out = _cli(stack, "budget", "set", PRIMARY, f"{limit / 1e6:.6f}")
    assert f"spent today ${spent_so_far / 1e6:,.4f}" in out
    time.sleep(1.5)  # every worker has polled the budgets' version
    calls_before = requests_to(stack, PRIMARY)

    handles = [stack.pool.submit(SAME) for _ in range(n + extra)]
    _wait_for(lambda: _parked(stack) == extra, 90, lambda: f"{_parked(stack)} parked, {requests_to(stack, PRIMARY) - calls_before} calls", stack)
    done = [r for r in stack.pool.wait_all(handles, timeout_s=1) if r is not None]
    assert len(done) == n and all(r.status == "finished" for r in done)
    assert requests_to(stack, PRIMARY) - calls_before == n  # paid calls stop at N
    assert {h.status() for h in handles if h.result() is None} == {"scheduled"}  # deferred, not failed
    shown = json.loads(_cli(stack, "budget", "show", "--json"))["budgets"][PRIMARY]
    assert shown["status"] == "spent" and shown["spent_usd"] == pytest.approx(limit / 1e6)
    logs = stack.workers.logs()
    for level in (50, 80, 100):  # one line per level, fleet-wide
        assert logs.count(f"budget {PRIMARY}: {level} % of today's budget spent") == 1, logs[-3000:]

    out = _cli(stack, "budget", "set", PRIMARY, "5")  # raised: the parked jobs come back at once
    assert f"{extra} waiting jobs back on their queues" in out
    records = stack.pool.wait_all(handles, timeout_s=90)
    assert all(r is not None and r.status == "finished" for r in records), logs_hint(stack)
    assert requests_to(stack, PRIMARY) - calls_before == n + extra
    stats = json.loads(_cli(stack, "stats", "--json"))
    assert stats["budgets"]["budgets"][PRIMARY]["status"] == "ok"


def test_a_spent_pool_budget_fails_the_jobs_whose_policy_says_so(stack):
    _start(stack, workers=1, concurrency=4, **{m: {**ROOMY, **PRICED} for m in (PRIMARY, SECOND, THIRD)})
    warm = stack.pool.submit(SAME).wait(timeout_s=30)
    per_job = cost_micro(_spec(stack, PRIMARY), warm.prompt_tokens, warm.output_tokens)
    spent_so_far = _spent_today(stack)
    _cli(stack, "budget", "set", "pool", f"{(spent_so_far + 3 * per_job) / 1e6:.6f}")
    time.sleep(1.5)
    calls_before = sum(requests_to(stack, m) for m in (PRIMARY, SECOND, THIRD))
    records = [stack.pool.submit({**SAME, "on_budget": "fail"}).wait(timeout_s=30) for _ in range(6)]
    assert [r.status for r in records] == ["finished"] * 3 + ["failed"] * 3, logs_hint(stack)
    assert {r.error.type for r in records[3:]} == {"budget_exhausted"}
    assert sum(requests_to(stack, m) for m in (PRIMARY, SECOND, THIRD)) - calls_before == 3


# --- the response cache --------------------------------------------------------------------------------


def test_a_cached_request_makes_no_call(stack):
    stack.env["GENPOOL_CACHE"] = "temperature0"
    _start(stack, workers=1, concurrency=8)
    ask = {"kind": "text", "prompt": "cache me", "cache": True}
    first = stack.pool.submit(ask).wait(timeout_s=30)
    calls = requests_to(stack, PRIMARY)
    again = stack.pool.submit(ask).wait(timeout_s=30)
    assert requests_to(stack, PRIMARY) == calls  # 0 simulator calls
    assert (again.cache_hit, again.cost_usd, again.cached_from) == (True, 0.0, first.id)
    assert again.storage == first.storage and again.model_used == first.model_used and not first.cache_hit

    warmer = stack.pool.submit({**ask, "generation": {"temperature": 0.7}}).wait(timeout_s=30)
    assert not warmer.cache_hit and requests_to(stack, PRIMARY) == calls + 1  # other settings: never shared
    zero = {"kind": "text", "prompt": "cached by the setting", "generation": {"temperature": 0}}
    zero_paid = stack.pool.submit(zero).wait(timeout_s=30)
    assert not zero_paid.cache_hit
    assert stack.pool.submit(zero).wait(timeout_s=30).cache_hit  # GENPOOL_CACHE=temperature0
    assert not stack.pool.submit({**zero, "cache": False}).wait(timeout_s=30).cache_hit
    cache = json.loads(_cli(stack, "stats", "--json"))["cache"]
    assert cache["hits"] == 2 and cache["misses"] == 3 and cache["hit_ratio"] == 0.4
    assert cache["saved_usd"] == pytest.approx(first.cost_usd + zero_paid.cost_usd)


def test_identical_requests_in_flight_make_one_paid_call(stack):
    _start(stack, workers=2, concurrency=16)
    stack.sim.models({PRIMARY: {"latency_ms": 1500, "jitter_ms": 0}})
    calls = requests_to(stack, PRIMARY)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": "single flight", "cache": True}] * 20)
    records = stack.pool.wait_all(handles, timeout_s=60)
    assert all(r is not None and r.status == "finished" for r in records), logs_hint(stack)
    assert requests_to(stack, PRIMARY) == calls + 1
    assert sorted(r.cache_hit for r in records) == [False] + [True] * 19
    leader = next(r for r in records if not r.cache_hit)
    assert {r.cached_from for r in records if r.cache_hit} == {leader.id}


def test_a_failed_leader_does_not_strand_the_jobs_waiting_for_it(stack):
    _start(stack, workers=1, concurrency=16)
    stack.sim.models({PRIMARY: {"latency_ms": 6000, "jitter_ms": 0}})
    stack.sim.faults([{"kind": "400", "model": PRIMARY, "start_s": 0, "end_s": 5.0}])  # the leader's call only
    calls = requests_to(stack, PRIMARY)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": "leader fails", "cache": True}] * 10)
    records = stack.pool.wait_all(handles, timeout_s=120)
    assert all(r is not None for r in records), logs_hint(stack)
    failed = [r for r in records if r.status == "failed"]
    assert len(failed) == 1 and failed[0].error.type == "invalid_argument"  # the leader: a 400 fails the job
    served = [r for r in records if r.status == "finished"]
    assert sorted(r.cache_hit for r in served) == [False] + [True] * 8  # the next one led, the rest were served
    assert requests_to(stack, PRIMARY) == calls + 2
