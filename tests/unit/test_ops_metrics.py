"""Pure parts of observability: model state, the timeline round trip, rates for the report, latency summary."""

from __future__ import annotations

import pytest

from genpool.ops.modelstate import classify
from genpool.ops.report import rates
from genpool.ops.summary import latency_summary
from genpool.shared import keys
from genpool.shared.metrics import TIMELINE_TTL_S, MetricsBatch, TimelinePoint, read_timeline

NOW_MS = 1_800_000_000_000


@pytest.mark.parametrize("raw, state, until_s", [
    ({}, "closed", None),
    ({"unavailable_until_ms": str(NOW_MS + 5000), "unavailable_reason": "not_found", "half_open": "1"},
     "down", NOW_MS / 1000 + 5),
    ({"unavailable_until_ms": str(NOW_MS + 5000), "unavailable_reason": "breaker_open:server_error",
      "half_open": "1"}, "open", NOW_MS / 1000 + 5),
    ({"unavailable_until_ms": str(NOW_MS - 1), "unavailable_reason": "breaker_open:timeout", "half_open": "1"},
     "half-open", None),
    ({"unavailable_until_ms": str(NOW_MS - 1), "half_open": "1", "probe_until_ms": str(NOW_MS + 300)},
     "half-open", NOW_MS / 1000 + 0.3),
])
def test_model_state_from_the_state_hash(raw, state, until_s):
    got = classify(raw, NOW_MS)
    assert (got.state, got.until_s, got.cooldown_until_s) == (state, until_s, None)


def test_a_429_cooldown_is_reported_beside_the_breaker_state_until_it_ends():
    raw = {"cooldown_until_ms": str(NOW_MS + 2000)}
    assert classify(raw, NOW_MS).cooldown_until_s == NOW_MS / 1000 + 2
    assert classify(raw, NOW_MS + 2000).cooldown_until_s is None
    assert classify(raw, NOW_MS).state == "closed"


def test_timeline_round_trip_with_ttl_and_outcome_groups(fake_redis):
    batch = MetricsBatch()
    t0 = 1_800_003_590.0  # 10 s before an hour boundary: two hourly keys
    for at_s, outcome in ((t0, "ok"), (t0 + 1, "rate_limited"), (t0 + 2, "server_error"), (t0 + 12, "ok")):
        batch.timeline_call("m", outcome, at_s=at_s)
    pipe = fake_redis.pipeline()
    batch.write(pipe)
    pipe.execute()
    hours = (int(t0 // 3600), int(t0 // 3600) + 1)
    assert all(0 < fake_redis.ttl(keys.metrics_timeline(h)) <= TIMELINE_TTL_S for h in hours)
    assert read_timeline(fake_redis, t0 - 100, t0 + 100) == [
        TimelinePoint(1_800_003_590, "m", "error", 1), TimelinePoint(1_800_003_590, "m", "ok", 1),
        TimelinePoint(1_800_003_590, "m", "rate_limited", 1), TimelinePoint(1_800_003_600, "m", "ok", 1)]
    assert read_timeline(fake_redis, t0 + 10, t0 + 100) == [TimelinePoint(1_800_003_600, "m", "ok", 1)]


def test_rates_are_calls_in_the_trailing_minute_per_slot():
    points = [TimelinePoint(1000, "a", "ok", 3), TimelinePoint(1030, "a", "rate_limited", 2),
              TimelinePoint(1070, "a", "ok", 1)]
    r = rates(points, 1000, 1085)["a"]
    assert [v for _, v in r.calls] == [3, 3, 3, 5, 5, 5, 2, 3, 3]  # slots 1000..1080, six slots each
    assert [v for _, v in r.limited] == [0, 0, 0, 2, 2, 2, 2, 2, 2]
    assert (r.total_calls, r.total_limited, r.peak) == (6, 2, 5)
    assert r.calls[-1][0] == 1085  # the last slot ends now, not in the future


def test_latency_summary_is_cumulative_with_bucket_bound_quantiles():
    s = latency_summary({"0.1": 10, "1": 9, "+Inf": 1})
    assert s["count"] == 20 and s["buckets"]["0.1"] == 10 and s["buckets"]["0.5"] == 10 and s["buckets"]["+Inf"] == 20
    assert (s["p50_le_s"], s["p95_le_s"]) == (0.1, 1.0)
    assert latency_summary({})["p50_le_s"] is None


def test_a_counter_whose_labels_grew_is_one_family_with_the_union_of_labels():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from genpool.ops.prometheus import counters

    rows = [("limiter_wait_seconds_total", {"model": "m"}, 1.5),  # written before `kind` was recorded
            ("limiter_wait_seconds_total", {"model": "m", "kind": "text"}, 2.0)]

    class Rows:
        def collect(self):
            return counters(rows)

    registry = CollectorRegistry()
    registry.register(Rows())
    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    assert {(s.labels["kind"], s.value) for s in family.samples if s.name.endswith("_total")} == {("", 1.5),
                                                                                                 ("text", 2.0)}


def test_a_float_counter_can_take_a_whole_amount_later(fake_redis):
    for wait_s in (0.25, 5.0, 1.5):
        batch = MetricsBatch()
        batch.inc("limiter_wait_seconds_total", wait_s, model="m")
        pipe = fake_redis.pipeline()
        batch.write(pipe)
        pipe.execute()
    raw = fake_redis.hgetall(keys.metrics_counters())
    assert [float(v) for v in raw.values()] == [6.75]
