"""The strategy: token-bucket math, pure and clock-injected. ``lua/_bucket.lua`` mirrors it op for op.

Each dimension is a bucket of capacity C refilled at r = (L' - C) / window, so any window of length
``window`` admits at most C + r * window = L' units (see docs/ratelimit.md for the proof sketch).
A grant may lie in the future ("reservation ahead"): it is debited *as of* its start time, and the
stored level stays expressed at "now", so it may be negative while reservations are queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from genpool.shared.ratelimit.limits import BUCKET_DIMS, ModelLimits

#: Absorbs float noise such as 29 * 0.01 = 0.29000000000000004 before floor/ceil (same in Lua).
EPSILON = 1e-9


@dataclass(frozen=True)
class BucketSpec:
    """One dimension's bucket: ``limit`` = L' (effective), ``capacity`` = C, refill per millisecond."""

    limit: int
    capacity: int
    rate_per_ms: float


def effective_limit(limit: int, safety: float) -> int:
    """L' = floor(L * safety), at least 1 for a limited dimension; 0 stays 0 (unlimited)."""
    if limit <= 0:
        return 0
    return max(1, math.floor(limit * safety + EPSILON))


def bucket_spec(limit: int, safety: float, burst: float, window_ms: int) -> BucketSpec | None:
    """C = ceil(L' * burst) kept within [1, L' - 1]; r = (L' - C) / window. ``None`` = unlimited."""
    eff = effective_limit(limit, safety)
    if eff == 0:
        return None
    capacity = max(1, min(math.ceil(eff * burst - EPSILON), eff - 1))
    # L' = 1 leaves no room for C < L': refill one unit per window (grants spaced >= window apart).
    return BucketSpec(eff, capacity, max(1, eff - capacity) / window_ms)


def specs_for(limits: ModelLimits) -> dict[str, BucketSpec]:
    """The limited bucket dimensions of a model."""
    specs = {}
    for dim in BUCKET_DIMS:
        spec = bucket_spec(getattr(limits, dim), limits.safety, limits.burst_for(dim), limits.window_ms)
        if spec is not None:
            specs[dim] = spec
    return specs


def refill(level: float, spec: BucketSpec, elapsed_ms: float) -> float:
    return min(spec.capacity, level + spec.rate_per_ms * max(0.0, elapsed_ms))


def wait_for(level: float, cost: int, spec: BucketSpec) -> float:
    """Milliseconds until ``level`` covers ``cost``; a cost above C waits for a full bucket instead."""
    need = min(cost, spec.capacity)
    if cost <= 0 or level >= need:
        return 0.0
    return (need - level) / spec.rate_per_ms


def level_after(level: float, cost: int, spec: BucketSpec, delay_ms: int) -> float:
    """The level now after debiting ``cost`` as of ``delay_ms`` ahead (refill lost to the cap counts)."""
    ahead = spec.rate_per_ms * delay_ms
    return min(spec.capacity, level + ahead) - cost - ahead


def credit(level: float, amount: float, spec: BucketSpec) -> float:
    """Give back (amount > 0, clamped at C) or charge (amount < 0, may go into debt)."""
    return min(spec.capacity, level + amount) if amount > 0 else level + amount


def plan(levels: Mapping[str, float], costs: Mapping[str, int], specs: Mapping[str, BucketSpec],
         floor_wait_ms: float = 0.0, floor_reason: str = "") -> tuple[int, str]:
    """The wait (whole ms, rounded up) before every dimension covers its cost, and the binding reason."""
    wait_ms, reason = (floor_wait_ms, floor_reason) if floor_wait_ms > 0 else (0.0, "")
    for dim in BUCKET_DIMS:
        if dim in specs and costs.get(dim, 0) > 0:
            dim_wait_ms = wait_for(levels[dim], costs[dim], specs[dim])
            if dim_wait_ms > wait_ms:
                wait_ms, reason = dim_wait_ms, dim
    return math.ceil(wait_ms), reason


@dataclass(frozen=True)
class Outcome:
    """The reference's answer: granted with ``delay_ms``, or not with ``wait_ms``."""

    granted: bool
    delay_ms: int
    wait_ms: int
    reason: str


class ReferenceBuckets:
    """In-memory twin of ``acquire.lua``'s bucket part (no day counter, no state hash)."""

    def __init__(self, limits: ModelLimits, clock: Callable[[], int]) -> None:
        self.specs = specs_for(limits)
        self.clock = clock
        self.levels: dict[str, float] = {dim: float(spec.capacity) for dim, spec in self.specs.items()}
        self.ts_ms = clock()

    def levels_at(self, now_ms: int) -> dict[str, float]:
        return {dim: refill(self.levels[dim], spec, now_ms - self.ts_ms) for dim, spec in self.specs.items()}

    def acquire(self, costs: Mapping[str, int], max_wait_ms: int, cooldown_until_ms: int = 0) -> Outcome:
        """Like the script, stores refilled levels only on a grant (float refill is path-dependent)."""
        now_ms = self.clock()
        levels = self.levels_at(now_ms)
        cooldown_ms = max(0, cooldown_until_ms - now_ms)
        wait_ms, reason = plan(levels, costs, self.specs, cooldown_ms, "cooldown")
        if wait_ms > max_wait_ms:
            return Outcome(False, 0, wait_ms, reason)
        for dim, spec in self.specs.items():
            if costs.get(dim, 0) > 0:
                levels[dim] = level_after(levels[dim], costs[dim], spec, wait_ms)
        self.levels, self.ts_ms = levels, now_ms
        return Outcome(True, wait_ms, 0, reason)

    def credit(self, amounts: Mapping[str, float]) -> None:
        now_ms = self.clock()
        levels = self.levels_at(now_ms)
        for dim, amount in amounts.items():
            if dim in self.specs:
                levels[dim] = credit(levels[dim], amount, self.specs[dim])
        self.levels, self.ts_ms = levels, now_ms
