"""Per-model counters shared by every worker, in Redis: gathered per job (``MetricsBatch``), summed per
worker process and written about once a second (``worker/metricsflush.py``), read by ``genpool stats``,
the Prometheus exporter and the report.

A counter is one field of one hash: ``name|label=value|...`` (labels sorted), so a flush costs one
pipelined HINCRBY per counter that moved, however many jobs moved it, and no extra round trip per job.

The timeline (calls per model per ``TIMELINE_STEP_S`` slot, for the report) lives in one hash per hour
with a TTL, so it stays bounded however long the pool runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.client import Pipeline

from genpool.shared import keys
from genpool.shared.ratelimit.days import current_pacific_offset_ms, day_index

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))
#: Timeline resolution: a minute is too coarse to see a burst against a per-minute quota.
TIMELINE_STEP_S = 10
TIMELINE_KEY_SPAN_S = 3600
TIMELINE_TTL_S = 2 * 24 * 3600
TIMELINE_OUTCOMES = ("ok", "rate_limited", "error")
SPEND_DAY_TTL_S = 3 * 24 * 3600


def spend_day_key(at_s: float) -> str:
    """Today's spend hash, by this host's clock and the Pacific day (the budgets' day)."""
    return keys.spend_day(day_index(int(at_s * 1000), current_pacific_offset_ms()))


@dataclass(frozen=True)
class TimelinePoint:
    at_s: int  # start of the slot, Unix seconds
    model: str
    outcome: str  # one of TIMELINE_OUTCOMES
    calls: int


def field_name(name: str, labels: Mapping[str, str]) -> str:
    return "|".join([name, *(f"{k}={labels[k]}" for k in sorted(labels))])


def parse_field(raw: str) -> tuple[str, dict[str, str]]:
    name, *pairs = raw.split("|")
    return name, dict(p.split("=", 1) for p in pairs)


def bucket_label(seconds: float) -> str:
    for edge in LATENCY_BUCKETS_S:
        if seconds <= edge:
            return "+Inf" if edge == float("inf") else f"{edge:g}"
    return "+Inf"


@dataclass
class MetricsBatch:
    """Counters gathered while one job runs (or summed over many: ``merge``), written by ``write``."""

    counters: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    timeline: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    durations: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    spend: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # model -> micro-USD, today

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[field_name(name, labels)] += amount

    def observe_latency(self, model: str, seconds: float) -> None:
        self.latency[(model, bucket_label(seconds))] += 1
        self.inc("latency_seconds_sum", seconds, model=model)
        self.inc("latency_seconds_count", 1, model=model)

    def observe_duration(self, kind: str, arm: str, seconds: float) -> None:
        """A job's duration in its kind's and routing arm's histogram (A/B comparison)."""
        self.durations[(kind, arm, bucket_label(seconds))] += 1
        self.inc("job_duration_seconds_sum", seconds, kind=kind, arm=arm)
        self.inc("job_duration_seconds_count", 1, kind=kind, arm=arm)

    def add_spend(self, model: str, micro_usd: int) -> None:
        """Money a call cost, counted per model per Pacific day (budgets start from it when set mid-day)."""
        self.spend[model] += micro_usd

    def timeline_call(self, model: str, outcome: str, at_s: float | None = None) -> None:
        """One Gemini call in the report's timeline; ``outcome`` is an attempt outcome (error kind or "ok")."""
        slot = int((at_s if at_s is not None else time.time()) // TIMELINE_STEP_S)
        group = outcome if outcome in ("ok", "rate_limited") else "error"
        self.timeline[(slot * TIMELINE_STEP_S // TIMELINE_KEY_SPAN_S, f"{slot}|{model}|{group}")] += 1

    def merge(self, other: MetricsBatch) -> None:
        """Add ``other``'s counts to this batch."""
        _add(self.counters, other.counters)
        _add(self.latency, other.latency)
        _add(self.timeline, other.timeline)
        _add(self.durations, other.durations)
        _add(self.spend, other.spend)

    def __bool__(self) -> bool:
        return bool(self.counters or self.latency or self.timeline or self.durations or self.spend)

    def write(self, pipe: Pipeline) -> None:
        """Queue every counter on a Redis pipeline (no round trip here)."""
        counters_key = keys.metrics_counters()
        for name, amount in self.counters.items():
            # Always HINCRBYFLOAT: HINCRBY on a field already holding "12.5" fails the whole job's pipeline
            # result (seen when a float counter such as limiter_wait_seconds_total got exactly 5.0).
            pipe.hincrbyfloat(counters_key, name, amount)
        for (model, bucket), count in self.latency.items():
            pipe.hincrby(keys.metrics_latency(model), bucket, count)
        for (span, name), count in self.timeline.items():
            pipe.hincrby(keys.metrics_timeline(span), name, count)
        for span in {span for span, _ in self.timeline}:
            pipe.expire(keys.metrics_timeline(span), TIMELINE_TTL_S)
        for (kind, arm, bucket), count in self.durations.items():
            pipe.hincrby(keys.metrics_duration(kind, arm), bucket, count)
        if self.spend:
            day_key = spend_day_key(time.time())
            for model, micro in self.spend.items():
                pipe.hincrby(day_key, model, micro)
            pipe.expire(day_key, SPEND_DAY_TTL_S)


def _add(into: dict[Any, Any], counts: Mapping[Any, float]) -> None:
    for name, amount in counts.items():
        into[name] = into.get(name, 0) + amount


def read_counters(raw: Mapping[bytes, bytes]) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for f, v in raw.items():
        name, labels = parse_field(f.decode())
        out.append((name, labels, float(v)))
    return out


def total(rows: Iterable[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(v for n, labels, v in rows if n == name and all(labels.get(k) == x for k, x in match.items()))


def read_timeline(conn: Any, start_s: float, end_s: float) -> list[TimelinePoint]:
    """Timeline points with ``start_s <= at_s < end_s``, oldest first (one pipelined HGETALL per hour)."""
    spans = range(int(start_s // TIMELINE_KEY_SPAN_S), int(end_s // TIMELINE_KEY_SPAN_S) + 1)
    pipe = conn.pipeline(transaction=False)
    for span in spans:
        pipe.hgetall(keys.metrics_timeline(span))
    points = [_point(f, v) for raw in pipe.execute() for f, v in raw.items()]
    return sorted((p for p in points if start_s <= p.at_s < end_s), key=lambda p: (p.at_s, p.model, p.outcome))


def _point(raw_field: bytes, value: bytes) -> TimelinePoint:
    slot, model, outcome = raw_field.decode().split("|")
    return TimelinePoint(at_s=int(slot) * TIMELINE_STEP_S, model=model, outcome=outcome, calls=int(value))
