"""One read of what operators look at: counters, latency buckets, model state, bucket levels, queue depths.

`genpool stats`, the Prometheus exporter and the report all render a ``Snapshot``; none reads Redis itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis

from genpool.ops.modelstate import ModelState, classify
from genpool.shared import keys
from genpool.shared.catalog import Catalog
from genpool.shared.metrics import read_counters
from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.strategy import effective_limit, specs_for

Row = tuple[str, dict[str, str], float]


@dataclass(frozen=True)
class Bucket:
    """One limited dimension: ``level`` now (rpd: requests left today) out of ``capacity`` (rpd: L')."""

    dimension: str
    level: float
    capacity: float
    limit: int  # the provider's number per window (rpd: per day), before the safety margin
    effective: int  # genpool's ceiling: the limit after the safety margin
    window_s: float


@dataclass(frozen=True)
class Snapshot:
    now_s: float
    rows: list[Row]
    latency: dict[str, dict[str, int]]  # model -> bucket upper bound label -> calls in that bucket
    states: dict[str, ModelState]
    buckets: dict[str, list[Bucket]]
    queues: dict[str, int]

    @property
    def models(self) -> list[str]:
        return sorted(set(self.states) | {labels["model"] for _, labels, _ in self.rows
                                          if labels.get("model", "none") != "none"})


def catalog_limits(catalog: Catalog) -> dict[str, ModelLimits]:
    return {m: s.limits for m, s in catalog.models.items()}


def take(conn: redis.Redis, models: Iterable[str] = (), defaults: Mapping[str, ModelLimits] | None = None,
         ) -> Snapshot:
    """Read everything; ``models`` (the catalog's) are shown even before any job used them."""
    rows = read_counters(conn.hgetall(keys.metrics_counters()))
    seen = sorted(set(models) | {labels["model"] for _, labels, _ in rows
                                 if labels.get("model", "none") != "none"})
    seconds, micros = conn.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    limiter = RedisLimiter(conn, defaults)
    return Snapshot(
        now_s=now_ms / 1000, rows=rows, latency=_latency(conn, seen),
        states={m: classify(_text_hash(conn.hgetall(keys.model_state(m))), now_ms) for m in seen},
        buckets={m: _buckets(limiter, m, (defaults or {}).get(m)) for m in seen},
        queues=_queues(conn),
    )


def _latency(conn: redis.Redis, models: Sequence[str]) -> dict[str, dict[str, int]]:
    pipe = conn.pipeline(transaction=False)
    for model in models:
        pipe.hgetall(keys.metrics_latency(model))
    replies = pipe.execute()
    return {m: _text_counts(raw) for m, raw in zip(models, replies, strict=True) if raw}


def _buckets(limiter: RedisLimiter, model: str, default: ModelLimits | None) -> list[Bucket]:
    stored = limiter.get_limits(model)
    limits = stored or default
    if limits is None:
        return []
    levels = limiter.levels(model) if stored else {}  # no limits in Redis yet: no job used it, buckets full
    out = [Bucket(dim, levels.get(dim, spec.capacity), spec.capacity, getattr(limits, dim), spec.limit,
                  limits.window_s) for dim, spec in specs_for(limits).items()]
    if limits.rpd:
        daily = effective_limit(limits.rpd, limits.safety)
        out.append(Bucket("rpd", levels.get("rpd", daily), daily, limits.rpd, daily, 86400.0))
    return out


def _queues(conn: redis.Redis) -> dict[str, int]:
    pipe = conn.pipeline(transaction=False)
    names = [keys.queue_name(p) for p in keys.PRIORITIES]
    for name in names:
        pipe.llen(f"rq:queue:{name}")  # RQ's own key for a queue's waiting jobs
    return dict(zip(names, pipe.execute(), strict=True))


def _text_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _text_counts(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}
