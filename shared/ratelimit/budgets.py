"""The budgets in Redis: which are set (the registry workers poll), each budget's record, today's spend.

``BudgetView`` is what one process knows of the registry (refreshed by worker/control.py): the limiter
passes a model's budget records to acquire only when one is set, so with no budget acquire reads nothing
more. ``BudgetStore`` is the operator's side (`genpool budget show | set`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from genpool.shared import keys
from genpool.shared.budget import POOL, BudgetRecord
from genpool.shared.ratelimit.days import current_pacific_offset_ms, day_index
from genpool.shared.ratelimit.scripts import Scripts, evalsha


def scope_field(scope: str) -> str:
    return POOL if scope == POOL else f"model:{scope}"


def record_key(scope: str) -> str:
    return keys.pool_budget() if scope == POOL else keys.model_budget(scope)


def parse_registry(raw: Mapping[Any, Any]) -> tuple[int, dict[str, int]]:
    """The registry hash -> (version, {scope: limit micro-USD})."""
    text = {_str(k): _str(v) for k, v in raw.items()}
    version = int(text.pop("version", 0))
    return version, {(POOL if f == POOL else f.removeprefix("model:")): int(v) for f, v in text.items()}


class BudgetView:
    """The budgets this process knows are set; swapped whole when the registry's version changes."""

    def __init__(self) -> None:
        self.version = -1
        # (models with a budget, pool budget set, per-model keys cache): one tuple, replaced whole, so a job
        # thread reads one consistent snapshot without a lock
        self._snapshot: tuple[frozenset[str], bool, dict[str, tuple[tuple[bytes, ...], tuple[str, ...]]]] = (
            frozenset(), False, {})

    def update(self, version: int, limits: Mapping[str, int]) -> None:
        models = frozenset(s for s, limit in limits.items() if s != POOL and limit > 0)
        self._snapshot = (models, limits.get(POOL, 0) > 0, {})
        self.version = version

    @property
    def any(self) -> bool:
        models, pool, _ = self._snapshot
        return bool(models) or pool

    def keys_for(self, model: str) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
        """The budget records a call to ``model`` is held in, and their scopes (both empty: no budget)."""
        models, pool, cache = self._snapshot
        found = cache.get(model)
        if found is None:
            scopes = tuple(s for s, on in ((model, model in models), (POOL, pool)) if on)
            found = cache[model] = (tuple(record_key(s).encode() for s in scopes), scopes)
        return found


@dataclass(frozen=True)
class BudgetState:
    scope: str
    record: BudgetRecord  # today's
    spent_metrics: int  # what the metrics counted today (every job, budget or not)


class BudgetStore:
    def __init__(self, connection: redis.Redis, utc_offset_ms: int | None = None) -> None:
        self._redis = connection
        self._scripts = Scripts.register(connection)
        self._offset_ms = utc_offset_ms

    def offset_ms(self) -> int:
        return current_pacific_offset_ms() if self._offset_ms is None else self._offset_ms

    def registry(self) -> tuple[int, dict[str, int]]:
        return parse_registry(self._redis.hgetall(keys.budgets()))

    def set(self, scope: str, limit_micro: int) -> BudgetRecord:
        """Set (0: remove) a budget; today's spend starts from what the metrics counted today. The record is
        written before the registry names it, so no worker passes a record that has no limit yet."""
        seed = sum(self.spend_today(None if scope == POOL else [scope]).values())
        args = (1, record_key(scope), limit_micro, seed, self.offset_ms())
        limit, spent, held = evalsha(self._redis, self._scripts.budget, args)
        with self._redis.pipeline(transaction=True) as pipe:
            if limit_micro > 0:
                pipe.hset(keys.budgets(), scope_field(scope), limit_micro)
            else:
                pipe.hdel(keys.budgets(), scope_field(scope))
            pipe.hincrby(keys.budgets(), "version", 1)
            pipe.execute()
        return BudgetRecord(limit=int(limit), spent=int(spent), held=int(held))

    def states(self, scopes: Iterable[str]) -> list[BudgetState]:
        """Each scope's record as of today (Redis's clock) and what the metrics counted today."""
        scopes = list(scopes)
        now_ms = self.now_ms()
        today = day_index(now_ms, self.offset_ms())
        pipe = self._redis.pipeline(transaction=False)
        for scope in scopes:
            pipe.hgetall(record_key(scope))
        raws = pipe.execute()
        spend = self.spend_today()
        return [BudgetState(s, BudgetRecord.from_hash(raw).today(today, now_ms),
                            sum(spend.values()) if s == POOL else spend.get(s, 0))
                for s, raw in zip(scopes, raws, strict=True)]

    def spend_today(self, models: list[str] | None = None) -> dict[str, int]:
        """Micro-USD the metrics counted today per model (``models``: only those)."""
        raw = self._redis.hgetall(keys.spend_day(day_index(self.now_ms(), self.offset_ms())))
        spend = {_str(k): int(float(_str(v))) for k, v in raw.items()}
        return spend if models is None else {m: spend[m] for m in models if m in spend}

    def now_ms(self) -> int:
        seconds, micros = self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
