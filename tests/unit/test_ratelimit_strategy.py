"""The window strategy as pure functions, and the bound it promises, over an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genpool.shared.ratelimit import strategy as s
from genpool.shared.ratelimit.audit import max_window_sum
from genpool.shared.ratelimit.limits import WINDOW_DIMS, ModelLimits


class Clock:
    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


def _window(limits: ModelLimits) -> tuple[Clock, s.ReferenceWindow]:
    clock = Clock()
    clock.now_ms = 1_000_000
    return clock, s.ReferenceWindow(limits, clock)


@pytest.mark.parametrize(("limit", "safety", "expected"), [(0, 0.99, 0), (1, 0.99, 1), (5, 0.99, 4),
                                                           (100, 0.99, 99), (1000, 0.29, 290), (60, 1.0, 60)])
def test_effective_limit(limit: int, safety: float, expected: int) -> None:
    assert s.effective_limit(limit, safety) == expected


def test_spec_derivation() -> None:
    spec = s.spec_for(ModelLimits(rpm=1000, tpm=10, window_s=60, guard_ms=500))
    assert spec == s.WindowSpec(limits=(1000, 10, 0), rpd=0, span_ms=60_500, slot_ms=100)
    assert s.slot_ms_for(1000) == 2 and s.slot_ms_for(600) == 1 and s.slot_ms_for(1) == 1


def test_a_slot_counts_until_its_last_millisecond_has_left_the_span() -> None:
    spec = s.WindowSpec(limits=(1, 0, 0), rpd=0, span_ms=1000, slot_ms=10)
    assert spec.slot_of(1009) == 100 and spec.slot_of(1010) == 101
    # Slot 100 is [1000, 1010): its last start, 1009, is in (s - 1000, s] until s = 2009.
    assert spec.free_at_ms(100) == 2009
    exact = s.WindowSpec(limits=(1, 0, 0), rpd=0, span_ms=1000, slot_ms=1)
    assert exact.free_at_ms(1000) == 2000  # 1 ms slots: exactly the provider's (t - W, t]


def test_misfit_names_the_first_dimension_that_does_not_fit() -> None:
    spec = s.WindowSpec(limits=(10, 100, 0), rpd=0, span_ms=1000, slot_ms=1)
    assert spec.misfit([9, 0, 0], (1, 100, 5)) == ""  # ipm unlimited
    assert spec.misfit([10, 0, 0], (1, 1, 0)) == "rpm"
    assert spec.misfit([0, 50, 0], (1, 51, 0)) == "tpm"
    assert spec.misfit([0, 0, 0], (1, 500, 0)) == ""  # above L': fits an empty window only
    assert spec.misfit([0, 1, 0], (1, 500, 0)) == "tpm"
    assert spec.misfit([10, 100, 0], (0, 0, 0)) == ""


def test_an_idle_quota_takes_the_whole_burst_at_once() -> None:
    clock, ref = _window(ModelLimits(rpm=60, window_s=60, guard_ms=0))
    assert [ref.acquire((1, 0, 0), 0) for _ in range(60)] == [s.Outcome(True, 0, 0, "")] * 60
    refused = ref.acquire((1, 0, 0), 0)
    assert refused == s.Outcome(False, 0, 60_000 - 1 + 100, "rpm")  # the first slot's last ms + W


def test_the_next_start_is_when_the_oldest_start_leaves_window_plus_guard() -> None:
    clock, ref = _window(ModelLimits(rpm=3, window_s=1, guard_ms=50))  # slot 2 ms, span 1050 ms
    t0 = clock.now_ms
    for gap in (0, 100, 100):
        clock.now_ms += gap
        assert ref.acquire((1, 0, 0), 0).granted
    clock.now_ms = t0 + 300
    fourth = ref.acquire((1, 0, 0), 5000)
    assert fourth.granted and fourth.reason == "rpm"
    assert t0 + 300 + fourth.delay_ms == (t0 // 2 + 1) * 2 - 1 + 1050
    fifth = ref.acquire((1, 0, 0), 5000)  # FIFO: behind the fourth, and after the second start's slot
    assert t0 + 300 + fifth.delay_ms == ((t0 + 100) // 2 + 1) * 2 - 1 + 1050


def test_starts_are_fifo_across_dimensions() -> None:
    """A request queued on tokens holds its place: cheap ones behind it never start before it."""
    clock, ref = _window(ModelLimits(rpm=1000, tpm=100, window_s=1, guard_ms=0))
    assert ref.acquire((1, 100, 0), 0).granted
    big = ref.acquire((1, 60, 0), 5000)
    small = ref.acquire((1, 1, 0), 5000)
    assert big.granted and small.granted and small.delay_ms >= big.delay_ms
    assert small.reason == "queued"


def test_max_wait_refuses_without_taking_anything() -> None:
    clock, ref = _window(ModelLimits(rpm=2, window_s=1, guard_ms=0))
    ref.acquire((1, 0, 0), 0)
    ref.acquire((1, 0, 0), 0)
    before = (dict(ref.record.slots), list(ref.record.sums), ref.record.last_ms)
    refused = ref.acquire((1, 0, 0), 10)
    assert not refused.granted and refused.wait_ms > 10
    assert (dict(ref.record.slots), list(ref.record.sums), ref.record.last_ms) == before


def test_cooldown_delays_the_start() -> None:
    clock, ref = _window(ModelLimits(rpm=100, window_s=1, guard_ms=0))
    outcome = ref.acquire((1, 0, 0), 5000, cooldown_until_ms=clock.now_ms + 700)
    assert outcome == s.Outcome(True, 700, 0, "cooldown")


def test_refund_frees_room_in_the_window_and_a_charge_takes_it() -> None:
    clock, ref = _window(ModelLimits(tpm=1000, window_s=60, guard_ms=0))
    first = ref.acquire((1, 800, 0), 0)
    assert not ref.acquire((1, 300, 0), 0).granted
    ref.settle(clock.now_ms + first.delay_ms, (0, -500, 0))  # used 300 of its 800
    assert ref.acquire((1, 300, 0), 0).granted
    ref.settle(clock.now_ms, (0, 400, 0))  # used 400 more than reserved
    assert ref.record.sums[1] == 1000 and not ref.acquire((1, 1, 0), 0).granted


def test_penalize_counts_the_window_as_full() -> None:
    clock, ref = _window(ModelLimits(rpm=10, tpm=1000, window_s=1, guard_ms=0))
    ref.acquire((1, 10, 0), 0)
    ref.penalize()
    assert ref.record.sums == [10, 1000, 0]
    assert ref.acquire((1, 1, 0), 5000).delay_ms >= 999


def test_walk_is_capped_and_answers_a_lower_bound() -> None:
    clock, ref = _window(ModelLimits(tpm=10_000, window_s=60, guard_ms=0))  # slot 100 ms
    for _ in range(s.MAX_WALK + 10):  # one token per slot
        assert ref.acquire((0, 1, 0), 0).granted
        clock.now_ms += 100
    ref.settle(clock.now_ms - 100, (0, 10_000 - s.MAX_WALK - 10, 0))  # the newest slot fills the window
    big = ref.acquire((0, 5000, 0), 60_000)
    assert not big.granted
    oldest_left = next(iter(ref.record.slots)) + s.MAX_WALK
    assert clock.now_ms + big.wait_ms == ref.spec.free_at_ms(oldest_left)


# -- the bound, on the reference, with every kind of interleaving -----------------------------------------

limits_st = st.builds(
    ModelLimits,
    rpm=st.sampled_from([0, 1, 3, 10, 60, 600]), tpm=st.sampled_from([0, 200, 5000]),
    ipm=st.sampled_from([0, 4, 20]), window_s=st.sampled_from([0.5, 1.0, 2.0, 60.0]),
    guard_ms=st.sampled_from([0, 0, 7, 250]), safety=st.sampled_from([1.0, 0.9]),
)
step_st = st.tuples(
    st.sampled_from([0, 0, 1, 3, 20, 150, 900, 5000]),  # ms since the previous call
    st.sampled_from([0, 1, 1, 1]),  # requests
    st.floats(0, 1),  # tokens, share of L' (0 = none)
    st.sampled_from([0, 0, 1]),  # images
    st.sampled_from([0, 50, 1000, 5000]),  # max_wait_ms
    st.sampled_from(["use", "use", "use", "release", "refund", "charge", "cooldown", "penalize"]),
)


Used = list[tuple[int, list[int], list[int]]]  # start, what it used, what was charged beyond its reservation


def _drive(clock: Clock, ref: s.ReferenceWindow, steps: list[tuple]) -> Used:
    used: Used = []
    cooldown_until_ms = last_start = 0
    for gap_ms, requests, token_share, images, max_wait_ms, then in steps:
        clock.now_ms += gap_ms
        costs = (requests, int(token_share * (ref.spec.limits[1] or 100)), images)
        if then == "cooldown":
            cooldown_until_ms = clock.now_ms + gap_ms * 3
        if then == "penalize":
            ref.penalize()
        outcome = ref.acquire(costs, max_wait_ms, cooldown_until_ms)
        if not outcome.granted:
            continue
        start = clock.now_ms + outcome.delay_ms
        assert start >= last_start  # FIFO
        last_start = start
        if then == "release":
            ref.settle(start, (-costs[0], -costs[1], -costs[2]))
            continue
        tokens = {"refund": costs[1] // 3, "charge": costs[1] * 2}.get(then, costs[1])
        ref.settle(start, (0, tokens - costs[1], 0))
        used.append((start, [costs[0], tokens, costs[2]], [0, max(0, tokens - costs[1]), 0]))
    return used


@settings(max_examples=400, deadline=None)
@given(limits_st, st.lists(step_st, min_size=1, max_size=200))
def test_no_trailing_window_exceeds_the_effective_limit(limits: ModelLimits, steps: list[tuple]) -> None:
    """What really started in any (t - W, t] stays within L', plus only the extra charged after the fact
    to starts inside that window (a charge is known only once the call answered)."""
    clock, ref = _window(limits)
    used = _drive(clock, ref, steps)
    for i, limit in enumerate(ref.spec.limits):
        if not limit:
            continue
        for window_ms in (limits.window_ms, ref.spec.span_ms):
            reserved = max_window_sum([(at, u[i] - x[i]) for at, u, x in used], window_ms)
            assert reserved <= limit, (WINDOW_DIMS[i], window_ms)
        for at, _, _ in used:  # the window ending at each start, charges included
            inside = [(u[i], x[i]) for other, u, x in used if at - limits.window_ms < other <= at]
            assert sum(u for u, _ in inside) <= limit + sum(x for _, x in inside), WINDOW_DIMS[i]


def test_audit_window_is_the_providers_trailing_window() -> None:
    assert max_window_sum([(0, 1), (1000, 1), (1001, 1)], 1000) == 2
    assert max_window_sum([(0, 1), (999, 1), (1000, 1)], 1000) == 2
    assert max_window_sum([(0, 1), (1, 1), (1000, 1)], 1000) == 2
    assert max_window_sum([], 1000) == 0
