"""Several OS processes share one budget: no sliding window ever admits more than L'.

Every grant is recorded at its start time on Redis's clock (``now_ms + delay_ms``) with what it
really used (after a release or a settle); the audit then slides the provider's trailing window
``(t - window_s, t]`` over them.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from multiprocessing.pool import Pool

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.audit import max_window_sum
from genpool.shared.ratelimit.strategy import spec_for

pytestmark = pytest.mark.integration

PROCESSES = 4
#: (sleep before, share of L'tpm, max_wait_ms, then: use | release | refund | charge)
Step = tuple[int, float, int, str]
Event = tuple[int, int, int, int]  # start_at_ms, requests, tokens used, tokens charged beyond the reservation


def run_client(redis_url: str, model: str, limits: ModelLimits, steps: list[Step], start_at_s: float) -> list[Event]:
    """One worker process: acquire per step; return what it really used and when it may start."""
    client = redis.Redis.from_url(redis_url)
    limiter = RedisLimiter(client, {model: limits})
    tpm_limit = spec_for(limits).limits[1]
    events: list[Event] = []
    time.sleep(max(0.0, start_at_s - time.time()))
    for sleep_ms, token_share, max_wait_ms, then in steps:
        time.sleep(sleep_ms / 1000)
        tokens = max(1, int(token_share * tpm_limit))
        decision = limiter.acquire(model, requests=1, tokens=tokens, max_wait_ms=max_wait_ms)
        if not decision.granted:
            continue
        start = decision.start_at_ms
        if then == "release":
            limiter.release(model, start, requests=1, tokens=tokens)
            continue
        actual = {"refund": tokens // 2, "charge": tokens * 2}.get(then, tokens)
        if actual != tokens:
            limiter.settle(model, start, tokens, actual)
        events.append((start, 1, actual, max(0, actual - tokens)))
    client.close()
    return events


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as workers:
        workers.map(time.sleep, [0] * PROCESSES)  # warm up: every process has imported the limiter
        yield workers


def _run(pool: Pool, redis_url: str, limits: ModelLimits, plans: list[list[Step]]) -> list[Event]:
    model = f"prop-{uuid.uuid4().hex[:8]}"
    start_at_s = time.time() + 0.2
    args = [(redis_url, model, limits, plan, start_at_s) for plan in plans]
    return [event for events in pool.starmap(run_client, args, chunksize=1) for event in events]


step_st = st.tuples(st.sampled_from([0, 0, 1, 5, 20]), st.one_of(st.sampled_from([0.0, 0.01, 0.3]), st.floats(0, 0.5)),
                    st.sampled_from([0, 100, 1500, 3000]),
                    st.sampled_from(["use", "use", "use", "release", "refund", "charge"]))
limits_st = st.builds(ModelLimits, rpm=st.sampled_from([20, 60, 150]), tpm=st.sampled_from([1500, 6000, 100_000]),
                      window_s=st.sampled_from([0.5, 1.0]), guard_ms=st.sampled_from([0, 10]),
                      safety=st.sampled_from([1.0, 0.95]))


# No shrinking: examples race real processes, so a shrunk one need not fail again (and it takes minutes).
@settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=limits_st, plans=st.lists(st.lists(step_st, max_size=30), min_size=PROCESSES, max_size=PROCESSES))
def test_no_trailing_window_exceeds_the_limit(pool: Pool, redis_url: str, limits: ModelLimits,
                                              plans: list[list[Step]]) -> None:
    """Requests and reserved tokens within L' in every (t - W, t]; tokens used within L' plus what was
    charged after the fact to starts in that window (a charge is known only once the call answered)."""
    events = _run(pool, redis_url, limits, plans)
    spec = spec_for(limits)
    rpm_limit, tpm_limit = spec.limits[0], spec.limits[1]
    assert max_window_sum([(at, n) for at, n, _, _ in events], limits.window_ms) <= rpm_limit
    assert max_window_sum([(at, t - x) for at, _, t, x in events], limits.window_ms) <= tpm_limit
    for at, _, _, _ in events:  # the worst window ending at each start, charges included
        inside = [(t, x) for other, _, t, x in events if at - limits.window_ms < other <= at]
        assert sum(t for t, _ in inside) <= tpm_limit + sum(x for _, x in inside)


def test_saturated_pool_fills_every_window_to_the_limit(pool: Pool, redis_url: str) -> None:
    """Four processes asking far more than the quota, reserving ahead: the first window takes the whole
    burst at once, and each later grant reuses the capacity its predecessor one quota earlier frees, no later
    than one slot (2 ms) after that start leaves the window. Checked start by start rather than by counting
    windows: how many of the burst's starts share a millisecond depends on the machine's load, and a window
    edge between two of them lowers a count without any capacity being lost."""
    limits = ModelLimits(rpm=60, tpm=10**6, window_s=1, guard_ms=0)  # L' 60, slots of 2 ms
    plans = [[(0, 0.0, 3000, "use")] * 60 for _ in range(PROCESSES)]
    starts = sorted(at for at, _, _, _ in _run(pool, redis_url, limits, plans))
    assert max_window_sum([(at, 1) for at in starts], limits.window_ms) <= 60
    assert len(starts) >= 180  # three windows' worth fit in the 3 s every ask may wait
    assert starts[59] - starts[0] < 500  # the idle window's burst is not paced (pacing needs ~1 s)
    slot_ms = spec_for(limits).slot_ms
    late = [(i, starts[i] - starts[i - 60] - limits.window_ms) for i in range(60, len(starts))
            if starts[i] > starts[i - 60] + limits.window_ms + slot_ms]
    assert not late, late[:5]
