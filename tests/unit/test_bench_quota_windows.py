"""bench_quota's measuring rules: which windows count, and the perfect pool it is held against."""

from __future__ import annotations

import bisect

from bench import bench_quota as q

CFG = q.Config(window_s=60.0, rpm=10, backlog_windows=3, latency_ms=1000)  # a chain quota of 30 per window


def window_limited_schedule(burst_s: float, guard_s: float) -> list[float]:
    """What a window limiter does with a backlog of whole windows: a burst, replayed one window (+ guard) later."""
    quota, step = CFG.chain_quota, burst_s / CFG.chain_quota
    return [w * (CFG.window_s + guard_s) + k * step for w in range(CFG.backlog_windows) for k in range(quota)]


def test_the_busy_span_runs_until_fewer_than_a_quota_of_jobs_is_left() -> None:
    ok = window_limited_schedule(burst_s=19.5, guard_s=0.5)
    ends = q.busy_ends(ok, 0.0, CFG, first_s=CFG.window_s)
    # 30 jobs (one quota) stay unserved until the third window's first admission at 121 s: the windows
    # ending up to it hold the second window's calls whole, so a pool at quota fills them.
    assert ends[0] == 60.0 and ends[-1] == 120.0
    assert len(ends) == 61
    assert q.busy_ends(ok, 0.0, CFG, first_s=1.0)[0] == 1.0


def test_the_replay_windows_are_the_steady_ones_before_the_last_quota_is_left() -> None:
    ok = window_limited_schedule(burst_s=19.5, guard_s=0.5)
    replay = q.replay_ends(ok, 0.0, CFG)
    assert replay == [float(t) for t in range(60, 80)]  # the second window's burst: 60.5 s to 79.85 s


def test_an_unfinished_run_counts_until_its_last_admission() -> None:
    ok = window_limited_schedule(burst_s=19.5, guard_s=0.5)[:40]
    assert q.busy_ends(ok, 0.0, CFG, first_s=1.0)[-1] == 66.0


def test_the_perfect_pool_is_bound_by_its_slots_and_by_each_models_window() -> None:
    starts = q.ideal_starts(CFG, slots=4)
    assert len(starts) == CFG.backlog
    assert starts[:4] == [0.0] * 4 and starts[4] == 1.0  # four slots, then the next start when a call ends
    for end in starts:  # never more than four calls in flight: a call lasts the mean latency
        assert bisect.bisect_right(starts, end) - bisect.bisect_left(starts, end - 1.0 + 1e-9) <= 4
    for end in [s + 1e-9 for s in starts]:  # the chain never holds more than its quota in a trailing window
        assert q.window_count(starts, end, CFG.window_s) <= CFG.chain_quota


def test_with_slots_enough_the_perfect_pool_starts_each_window_at_once() -> None:
    starts = q.ideal_starts(CFG, slots=1000)
    assert starts == [0.0] * 30 + [60.0] * 30 + [120.0] * 30
    figures = q.analyse_ideal(CFG, slots=1000)
    assert figures["occupancy_mean"] == figures["occupancy_steady"] == 1.0
    assert figures["drained_s"] == 121.0


def test_a_slot_bound_first_window_costs_the_perfect_pool_its_ramp_only() -> None:
    figures = q.analyse_ideal(CFG, slots=4)
    assert figures["occupancy_steady"] == 1.0
    assert figures["occupancy_mean"] < 1.0  # the windows of the first window's ramp: 4 starts a second
