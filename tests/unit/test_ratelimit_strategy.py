"""Bucket math as pure functions, and the window bound it promises, over an injected clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genpool.shared.ratelimit import strategy as s
from genpool.shared.ratelimit.audit import max_window_sum
from genpool.shared.ratelimit.limits import ModelLimits


class Clock:
    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


def test_spec_derivation() -> None:
    spec = s.bucket_spec(1000, 0.99, 0.01, 60_000)
    assert spec == s.BucketSpec(limit=990, capacity=10, rate_per_ms=980 / 60_000)
    assert spec.capacity + spec.rate_per_ms * 60_000 == pytest.approx(990)


@pytest.mark.parametrize(("limit", "safety", "expected"), [(0, 0.99, 0), (1, 0.99, 1), (5, 0.99, 4),
                                                           (100, 0.99, 99), (1000, 0.29, 290)])
def test_effective_limit(limit: int, safety: float, expected: int) -> None:
    assert s.effective_limit(limit, safety) == expected


def test_unlimited_has_no_spec() -> None:
    assert s.bucket_spec(0, 0.99, 0.01, 60_000) is None
    assert s.specs_for(ModelLimits(rpm=10)).keys() == {"rpm"}


def test_small_limits_keep_capacity_below_limit() -> None:
    assert s.bucket_spec(3, 1.0, 1.0, 1000) == s.BucketSpec(3, 2, 1 / 1000)
    assert s.bucket_spec(1, 1.0, 0.01, 1000) == s.BucketSpec(1, 1, 1 / 1000)  # L' = 1: one per window


def test_refill_caps_and_ignores_clock_going_back() -> None:
    spec = s.BucketSpec(100, 10, 0.5)
    assert s.refill(0, spec, 4) == 2
    assert s.refill(0, spec, 1000) == 10
    assert s.refill(3, spec, -50) == 3


def test_wait_for() -> None:
    spec = s.BucketSpec(100, 10, 0.5)
    assert s.wait_for(5, 3, spec) == 0
    assert s.wait_for(-2, 3, spec) == 10
    assert s.wait_for(4, 50, spec) == 12  # above capacity: wait for a full bucket
    assert s.wait_for(-100, 0, spec) == 0


def test_level_after_counts_refill_lost_to_the_cap() -> None:
    spec = s.BucketSpec(100, 10, 0.5)
    assert s.level_after(10, 1, spec, 0) == 9
    assert s.level_after(-4, 1, spec, 10) == -5  # no cap in the way: a plain debit
    assert s.level_after(10, 1, spec, 10) == 10 - 1 - 5  # full all along: 5 units of refill are lost


def test_credit_clamps_refunds_not_charges() -> None:
    spec = s.BucketSpec(100, 10, 0.5)
    assert s.credit(8, 5, spec) == 10
    assert s.credit(8, -20, spec) == -12


def test_plan_picks_the_binding_dimension() -> None:
    specs = s.specs_for(ModelLimits(rpm=1000, tpm=100_000, window_s=60))
    levels = {"rpm": 0.5, "tpm": 10.0}
    assert s.plan(levels, {"rpm": 1, "tpm": 5}, specs) == (math.ceil(0.5 / specs["rpm"].rate_per_ms), "rpm")
    assert s.plan(levels, {"rpm": 1, "tpm": 5}, specs, 10_000, "cooldown") == (10_000, "cooldown")
    assert s.plan({"rpm": 5.0, "tpm": 10.0}, {"rpm": 1, "tpm": 5}, specs) == (0, "")


def test_reference_paces_reservations_at_one_over_rate() -> None:
    clock = Clock()
    ref = s.ReferenceBuckets(ModelLimits(rpm=23, window_s=1), clock)  # L' 22, C 1, r 21/s
    first = ref.acquire({"rpm": 1}, 0)
    delays = [ref.acquire({"rpm": 1}, 10_000).delay_ms for _ in range(5)]
    assert first == s.Outcome(True, 0, 0, "")
    # Slots are 1/r = 47.6 ms apart; whole-ms delays round each one up (with C = 1 the fraction is lost).
    gaps = [b - a for a, b in zip([0, *delays], delays, strict=False)]
    assert all(1000 / 21 <= gap <= math.ceil(1000 / 21) for gap in gaps), gaps


def test_reference_all_or_nothing() -> None:
    clock = Clock()
    ref = s.ReferenceBuckets(ModelLimits(rpm=1000, tpm=1000, window_s=60), clock)
    before = dict(ref.levels)
    outcome = ref.acquire({"rpm": 1, "tpm": 40}, 0)  # tpm C = 50... but 40 fits; take it all
    assert outcome.granted
    refused = ref.acquire({"rpm": 1, "tpm": 40}, 0)
    assert not refused.granted and refused.reason == "tpm"
    assert ref.levels["rpm"] == before["rpm"] - 1


# -- the window bound, on the reference, with every kind of interleaving --------------------------------

limits_st = st.builds(
    ModelLimits,
    rpm=st.sampled_from([0, 3, 10, 60, 600]), tpm=st.sampled_from([0, 200, 5000]),
    ipm=st.sampled_from([0, 4, 20]), window_s=st.sampled_from([1.0, 2.0]),
    burst=st.sampled_from([0.01, 0.2, 0.5]), token_burst=st.sampled_from([0.05, 0.5]),
)
step_st = st.tuples(
    st.sampled_from([0, 0, 1, 3, 20, 150, 900]),  # ms since the previous call
    st.sampled_from([0, 1, 1, 1]),  # requests
    st.one_of(st.sampled_from([0.0, 0.01, 1.0]), st.floats(0, 1)),  # tokens, share of capacity (0 = none)
    st.sampled_from([0, 0, 1]),  # images
    st.sampled_from([0, 50, 1000, 5000]),  # max_wait_ms
    st.sampled_from(["use", "use", "use", "release", "settle", "cooldown"]),
)


@settings(max_examples=300, deadline=None)
@given(limits_st, st.lists(step_st, min_size=1, max_size=200))
def test_no_window_exceeds_the_effective_limit(limits: ModelLimits, steps: list[tuple]) -> None:
    clock = Clock()
    ref = s.ReferenceBuckets(limits, clock)
    used: dict[str, list[tuple[int, float]]] = {dim: [] for dim in ref.specs}
    cooldown_until_ms = 0
    for gap_ms, requests, token_share, images, max_wait_ms, then in steps:
        clock.now_ms += gap_ms
        tpm_cap = ref.specs["tpm"].capacity if "tpm" in ref.specs else 100
        costs = {"rpm": requests, "tpm": math.floor(token_share * tpm_cap), "ipm": images}
        if then == "cooldown":
            cooldown_until_ms = clock.now_ms + gap_ms * 3
        outcome = ref.acquire(costs, max_wait_ms, cooldown_until_ms)
        if not outcome.granted:
            continue
        if then == "release":  # never used: give it all back
            ref.credit({dim: float(cost) for dim, cost in costs.items()})
            continue
        if then == "settle":  # used fewer tokens than reserved
            actual = costs["tpm"] // 3
            ref.credit({"tpm": float(costs["tpm"] - actual)})
            costs["tpm"] = actual
        for dim in ref.specs:
            if costs[dim] > 0:
                used[dim].append((clock.now_ms + outcome.delay_ms, costs[dim]))
    for dim, spec in ref.specs.items():
        # L' = 1 only promises one per half-open window (grants spaced >= window apart).
        window_ms = limits.window_ms - (1 if spec.limit == 1 else 0)
        assert max_window_sum(used[dim], window_ms) <= spec.limit, dim


def test_a_request_queued_on_tokens_holds_its_request_slot_until_it_starts() -> None:
    """Regression for the naive multi-dimension debit (every dimension debited *now*, sleep the max).

    Big requests queue 3 s deep on tpm while rpm has room; cheap ones arriving meanwhile would each
    pass rpm "now" and all start together when the tpm queue drains: 100 starts in one second against
    L'rpm = 59. Debiting rpm as of the start time spaces them at 1/r instead.
    """
    clock = Clock()
    limits = ModelLimits(rpm=60, tpm=1000, window_s=1)  # rpm: L' 59, C 1; tpm: L' 990, C 50
    ref = s.ReferenceBuckets(limits, clock)
    starts: list[tuple[int, float]] = []
    for i in range(160):
        clock.now_ms = i * 20  # 50 arrivals/s: under the rpm rate, so rpm alone never waits
        outcome = ref.acquire({"rpm": 1, "tpm": 50 if i < 60 else 1}, 10_000)
        assert outcome.granted
        starts.append((clock.now_ms + outcome.delay_ms, 1))
    assert max_window_sum(starts, limits.window_ms) <= 59


def test_cost_above_capacity_waits_for_full_bucket_then_goes_into_debt() -> None:
    clock = Clock()
    ref = s.ReferenceBuckets(ModelLimits(tpm=10_000, window_s=60), clock)  # C 495
    spec = ref.specs["tpm"]
    assert ref.acquire({"tpm": 100}, 0).granted
    big = ref.acquire({"tpm": 2000}, 60_000)
    assert big.granted and big.delay_ms == math.ceil(100 / spec.rate_per_ms)
    assert ref.levels["tpm"] == pytest.approx(spec.capacity - 2000 - spec.rate_per_ms * big.delay_ms)


def test_audit_window_is_closed() -> None:
    assert max_window_sum([(0, 1), (1000, 1), (1001, 1)], 1000) == 2
    assert max_window_sum([(0, 1), (999, 1), (1000, 1)], 1000) == 3
    assert max_window_sum([], 1000) == 0
