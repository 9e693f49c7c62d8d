"""Sliding-window and daily quota math, driven by explicit timestamps (no sleeping)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from genpool.sim.quota import (
    PACIFIC,
    Cost,
    DailyCounter,
    Limits,
    ModelQuota,
    SlidingWindow,
    seconds_to_pacific_midnight,
)
from genpool.sim.quota_errors import quota_exhausted, quota_names


def test_window_admits_up_to_limit_then_reports_wait_until_oldest_expires() -> None:
    window = SlidingWindow()
    for at_s in (100.0, 101.0, 102.0):
        assert window.wait_s(at_s, 60.0, 1, 3) is None
        window.add(at_s, 60.0, 1)
    assert window.wait_s(110.0, 60.0, 1, 3) == pytest.approx(50.0)  # the event at 100 frees at 160
    assert window.wait_s(160.0, 60.0, 1, 3) is None  # exactly window_s later it no longer counts


def test_window_wait_counts_enough_expiries_for_a_large_cost() -> None:
    window = SlidingWindow()
    window.add(0.0, 10.0, 40)
    window.add(2.0, 10.0, 40)
    window.add(4.0, 10.0, 20)
    # 100 used, limit 100: a cost of 50 needs the first two events gone (80 freed >= 50).
    assert window.wait_s(5.0, 10.0, 50, 100) == pytest.approx(7.0)
    assert window.wait_s(5.0, 10.0, 30, 100) == pytest.approx(5.0)


def test_cost_above_limit_waits_a_whole_window() -> None:
    assert SlidingWindow().wait_s(0.0, 60.0, 500, 100) == 60.0


def test_unlimited_and_zero_cost_always_fit() -> None:
    window = SlidingWindow()
    window.add(0.0, 60.0, 10**6)
    assert window.wait_s(1.0, 60.0, 1, 0) is None
    assert window.wait_s(1.0, 60.0, 0, 5) is None


def test_peak_is_the_highest_occupancy_of_any_window() -> None:
    window = SlidingWindow()
    for at_s in (0.0, 1.0, 2.0, 30.0, 61.5, 62.0):
        window.add(at_s, 60.0, 1)
    assert window.peak == 4  # 0, 1, 2, 30 were all inside one 60 s window
    assert window.used(62.0, 60.0) == 3  # 30, 61.5, 62


def test_model_quota_rejection_consumes_nothing() -> None:
    quota = ModelQuota()
    limits = Limits(rpm=10, tpm=100, window_s=60.0)
    assert quota.admit(0.0, Cost(1, 80, 0), limits) == []
    found = quota.admit(1.0, Cost(1, 30, 0), limits)
    assert [v.dimension for v in found] == ["tpm"]
    assert found[0].wait_s == pytest.approx(59.0)
    assert quota.occupancy(1.0, 60.0) == {"requests": 1, "tokens": 80, "images": 0}
    assert quota.daily.count == 1


def test_model_quota_reports_every_violated_dimension_in_order() -> None:
    quota = ModelQuota()
    limits = Limits(rpm=1, tpm=10, ipm=1, rpd=1, window_s=60.0)
    assert quota.admit(0.0, Cost(1, 10, 1), limits) == []
    found = quota.admit(5.0, Cost(1, 10, 1), limits)
    assert [v.dimension for v in found] == ["rpm", "tpm", "ipm", "rpd"]
    assert [v.limit for v in found] == [1, 10, 1, 1]


def test_daily_counter_resets_at_pacific_midnight() -> None:
    before = dt.datetime(2026, 11, 23, 23, 59, 30, tzinfo=PACIFIC).timestamp()
    counter = DailyCounter()
    counter.add(before, 1)
    assert counter.wait_s(before, 1, 1) == pytest.approx(30.0)
    assert counter.wait_s(before + 31.0, 1, 1) is None
    assert counter.used(before + 31.0) == 0


def test_pacific_midnight_handles_dst_change() -> None:
    # 2026-11-01 is 25 hours long in Los Angeles (DST ends).
    start = dt.datetime(2026, 11, 1, 0, 0, 0, tzinfo=PACIFIC).timestamp()
    assert seconds_to_pacific_midnight(start) == pytest.approx(25 * 3600)


def test_quota_error_body_matches_gemini_shape() -> None:
    quota = ModelQuota()
    limits = Limits(rpm=15, window_s=60.0)
    for at_s in range(15):
        quota.admit(float(at_s), Cost(), limits)
    found = quota.admit(47.6, Cost(), limits)
    err = quota_exhausted(found, "gemini-2.5-flash")
    body = err.body()["error"]
    assert (body["code"], body["status"], err.reason) == (429, "RESOURCE_EXHAUSTED", "quota:rpm")
    failure, help_, retry = body["details"]
    assert failure["violations"][0] == {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "15"}
    assert help_["@type"] == "type.googleapis.com/google.rpc.Help"
    assert retry == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{math.ceil(12.4)}s"}
    assert "Please retry in 12.4" in body["message"]


def test_free_tier_quota_names() -> None:
    assert quota_names("tpm", free_tier=True) == (
        "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
        "GenerateContentInputTokensPerModelPerMinute-FreeTier")
