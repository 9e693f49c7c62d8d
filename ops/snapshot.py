"""One read of what operators look at: counters, latency buckets, model state, limiter windows, queue depths.

`genpool stats`, the Prometheus exporter and the report all render a ``Snapshot``; none reads Redis itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from genpool.ops.modelstate import ModelState, classify
from genpool.shared import keys
from genpool.shared.catalog import Catalog
from genpool.shared.metrics import read_counters
from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.limits import WINDOW_DIMS
from genpool.shared.ratelimit.strategy import spec_for

Row = tuple[str, dict[str, str], float]


@dataclass(frozen=True)
class WindowUse:
    """One limited dimension: ``used`` of ``effective`` (L') in the trailing window as of the next
    possible start (rpd: requests used today); ``limit`` is the provider's number."""

    dimension: str
    used: float
    effective: int
    limit: int
    window_s: float


@dataclass(frozen=True)
class LimiterView:
    """A model's limiter as operators see it: use per dimension, starts booked ahead, the override."""

    windows: list[WindowUse]
    ahead_s: float
    override: dict[str, str]


@dataclass(frozen=True)
class Snapshot:
    now_s: float
    rows: list[Row]
    latency: dict[str, dict[str, int]]  # model -> bucket upper bound label -> calls in that bucket
    states: dict[str, ModelState]
    limiters: dict[str, LimiterView]
    queues: dict[str, int]
    durations: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (kind, arm) -> bucket -> jobs
    routing: dict[str, Any] | None = None  # `genpool models show --json`
    budgets: dict[str, Any] | None = None  # `genpool budget show --json`

    @property
    def models(self) -> list[str]:
        return sorted(set(self.states) | {labels["model"] for _, labels, _ in self.rows
                                          if labels.get("model", "none") != "none"})


def catalog_limits(catalog: Catalog) -> dict[str, ModelLimits]:
    return {m: s.limits for m, s in catalog.models.items()}


def take(conn: redis.Redis, models: Iterable[str] = (), defaults: Mapping[str, ModelLimits] | None = None,
         catalog: Catalog | None = None) -> Snapshot:
    """Read everything; ``models`` (the catalog's) are shown even before any job used them; with the
    ``catalog``, also the routing in force and the budgets."""
    rows = read_counters(conn.hgetall(keys.metrics_counters()))
    seen = sorted(set(models) | {labels["model"] for _, labels, _ in rows
                                 if labels.get("model", "none") != "none"})
    seconds, micros = conn.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    limiter = RedisLimiter(conn, defaults)
    return Snapshot(
        now_s=now_ms / 1000, rows=rows, latency=_latency(conn, seen),
        states={m: classify(_text_hash(conn.hgetall(keys.model_state(m))), now_ms) for m in seen},
        limiters={m: view for m in seen if (view := _limiter_view(limiter, m, (defaults or {}).get(m)))},
        queues=_queues(conn), durations=_durations(conn, rows),
        routing=_routing(conn, catalog) if catalog else None, budgets=_budgets(conn) if catalog else None,
    )


def _durations(conn: redis.Redis, rows: list[Row]) -> dict[tuple[str, str], dict[str, int]]:
    arms = sorted({(labels["kind"], labels["arm"]) for name, labels, _ in rows if name == "job_duration_seconds_count"})
    pipe = conn.pipeline(transaction=False)
    for kind, arm in arms:
        pipe.hgetall(keys.metrics_duration(kind, arm))
    return {arm: _text_counts(raw) for arm, raw in zip(arms, pipe.execute(), strict=True)}


def _routing(conn: redis.Redis, catalog: Catalog) -> dict[str, Any]:
    from genpool.ops.models import describe
    from genpool.shared.routing import RoutingStore

    return describe(RoutingStore(conn, catalog))


def _budgets(conn: redis.Redis) -> dict[str, Any]:
    from genpool.ops.budget import describe
    from genpool.shared.ratelimit.budgets import BudgetStore

    return describe(BudgetStore(conn))


def _latency(conn: redis.Redis, models: Sequence[str]) -> dict[str, dict[str, int]]:
    pipe = conn.pipeline(transaction=False)
    for model in models:
        pipe.hgetall(keys.metrics_latency(model))
    replies = pipe.execute()
    return {m: _text_counts(raw) for m, raw in zip(models, replies, strict=True) if raw}


def _limiter_view(limiter: RedisLimiter, model: str, default: ModelLimits | None) -> LimiterView | None:
    stored = limiter.get_limits(model)
    limits = stored or default
    if limits is None:
        return None
    used = limiter.levels(model) if stored else {}  # no limits in Redis yet: no job used it, nothing counted
    spec = spec_for(limits)
    windows = [WindowUse(dim, used.get(dim, 0.0), eff, getattr(limits, dim), limits.window_s)
               for dim, eff in zip(WINDOW_DIMS, spec.limits, strict=True) if eff]
    if spec.rpd:
        windows.append(WindowUse("rpd", spec.rpd - used.get("rpd", spec.rpd), spec.rpd, limits.rpd, 86400.0))
    override = limiter.get_override(model) if stored else {}
    return LimiterView(windows, used.get("ahead_ms", 0.0) / 1000, override)


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
