"""Budgets: USD per Pacific day, per model and for the whole pool, enforced where the limiter reserves.

Money is integer micro-USD (a price in USD per million tokens is a price in micro-USD per token). A granted
call holds its estimated cost in every budget that is set, in the same script call that reserves its window
(``lua/_budget.lua`` in acquire); settle swaps the hold for the real cost in the same call that settles its
tokens. A call starts only while what was spent today plus what calls in flight hold is below the limit:

- spent >= limit: ``budget``: nothing more today; the answer is ``wait`` until the Pacific midnight;
- spent + held >= limit: ``budget_held``: calls in flight hold the rest; wait ``HELD_WAIT_MS`` for them to
  settle (a hold above the real cost comes back).

So spend stops at the limit, over it by at most what the calls in flight cost beyond their estimates.
``ReferenceBudget`` is the Python twin of the Lua, compared with it by the contract tests.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from genpool.shared.catalog import ModelSpec
from genpool.shared.errors import ValidationError
from genpool.shared.ratelimit.days import day_index, next_midnight_ms

MICRO = 1_000_000
ALERT_LEVELS = (50, 80, 100)
HOLD_MAX_MS = 900_000  # no call runs this long: a hold older than this belongs to a worker that died
HELD_WAIT_MS = 1_000
EXHAUSTED, HELD = "budget", "budget_held"
POOL = "pool"  # the scope of the whole pool's budget; any other scope is a model id
#: The output estimate before a model has answered in this process (capped by the job's max_output_tokens).
SEED_OUTPUT_TOKENS = 1024
OUTPUT_SMOOTHING = 0.2  # weight of the newest answer in the running mean of output tokens


def usd_to_micro(usd: float) -> int:
    return round(usd * MICRO)


def micro_to_usd(micro: float) -> float:
    return round(micro / MICRO, 6)


def parse_usd(text: str) -> int:
    """``5``, ``5.25``, ``$5`` -> micro-USD; ``none`` / ``off`` / ``0`` -> 0 (no budget)."""
    cleaned = text.strip().lstrip("$")
    if cleaned.lower() in ("none", "off", "0"):
        return 0
    try:
        usd = float(cleaned)
    except ValueError:
        raise ValidationError(f"expected USD per day (e.g. 25 or 2.50, none to remove), got {text!r}") from None
    if not math.isfinite(usd) or usd < 0:
        raise ValidationError(f"a budget is USD >= 0 per day, got {text!r}")
    return usd_to_micro(usd)


def cost_micro(spec: ModelSpec, prompt_tokens: int, output_tokens: int, images: int = 0) -> int:
    """The catalog price of a call in whole micro-USD, rounded up (float noise aside)."""
    exact = (prompt_tokens * spec.price_input_per_mtok + output_tokens * spec.price_output_per_mtok
             + images * spec.price_per_image * MICRO)
    return max(0, math.ceil(exact - 1e-6))


@dataclass(frozen=True)
class BudgetRecord:
    """One budget's hash: ``limit`` (0 = none), the Pacific ``day`` its counters are for, ``spent``, ``held``,
    when the latest hold was taken (``held_ms``) and the highest alert level reported that day."""

    limit: int = 0
    day: int = -1
    spent: int = 0
    held: int = 0
    held_ms: int = 0
    alerted: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> BudgetRecord:
        text = {_text(k): int(float(_text(v))) for k, v in raw.items()}
        return cls(**{name: text[name] for name in ("limit", "day", "spent", "held", "held_ms", "alerted")
                      if name in text})

    def today(self, today: int, now_ms: int) -> BudgetRecord:
        """As of ``today``: an earlier day's counters start over; a hold older than any call is dropped."""
        fresh = self if self.day == today else replace(self, day=today, spent=0, held=0, alerted=0)
        return replace(fresh, held=0) if now_ms - self.held_ms > HOLD_MAX_MS else fresh

    def verdict(self) -> str:
        if self.limit <= 0:
            return ""
        if self.spent >= self.limit:
            return EXHAUSTED
        return HELD if self.spent + self.held >= self.limit else ""

    @property
    def percent(self) -> float:
        return 100.0 * self.spent / self.limit if self.limit > 0 else 0.0


def alert_level(spent: int, limit: int) -> int:
    """The highest alert level ``spent`` reached (0 below the first)."""
    return max((pct for pct in ALERT_LEVELS if limit > 0 and spent * 100 >= pct * limit), default=0)


class ReferenceBudget:
    """In-memory twin of one budget record in ``acquire.lua`` / ``settle.lua`` / ``budget.lua``."""

    def __init__(self, limit: int, clock: Callable[[], int], offset_ms: int) -> None:
        self.record = BudgetRecord(limit=limit)
        self.clock = clock
        self.offset_ms = offset_ms

    def current(self) -> BudgetRecord:
        now = self.clock()
        return self.record.today(day_index(now, self.offset_ms), now)

    def set(self, limit: int, seed: int = 0) -> None:
        """An operator sets the limit; today's spend is at least ``seed`` (what the metrics counted today)."""
        b = self.current()
        spent = max(b.spent, seed)
        self.record = replace(b, limit=limit, spent=spent, alerted=alert_level(spent, limit))

    def hold(self, cost: int) -> None:
        if self.record.limit > 0:
            now = self.clock()
            held = self.current()
            self.record = replace(held, held=held.held + cost, held_ms=now)

    def settle(self, held: int, actual: int) -> int:
        """The call is over; returns the alert level it crossed (0: none)."""
        now = self.clock()
        b = self.current()
        b = replace(b, held=max(0, b.held - held), spent=b.spent + actual, held_ms=self.record.held_ms)
        level = alert_level(b.spent, b.limit)
        self.record = replace(b, alerted=max(b.alerted, level), day=day_index(now, self.offset_ms))
        return level if level > b.alerted else 0


def check(budgets: Sequence[ReferenceBudget], now_ms: int, offset_ms: int) -> tuple[str, int]:
    """What acquire answers for these budgets: ("", 0), (``budget``, ms to midnight) or (``budget_held``, ms)."""
    verdicts = [b.current().verdict() for b in budgets]
    if EXHAUSTED in verdicts:
        return EXHAUSTED, next_midnight_ms(now_ms, offset_ms) - now_ms
    return (HELD, HELD_WAIT_MS) if HELD in verdicts else ("", 0)


class CostEstimator:
    """What a call holds before it is made: the prompt-token estimate x input price + an output estimate x
    output price + images x image price.

    The output estimate is this process's running mean of the model's real output tokens (seeded with
    ``SEED_OUTPUT_TOKENS``), capped by the job's ``max_output_tokens`` or the model's output limit. Settle
    swaps every hold for the real cost, so the estimate only decides how much of the budget calls in flight
    hold: the mean makes the expected overshoot zero and the stop exact when answers are alike, where the
    ceiling (65,536 tokens, ~60x a typical answer) would hold back most of the budget while calls run."""

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}
        self._lock = threading.Lock()

    def estimate(self, spec: ModelSpec, prompt_tokens: int, images: int, max_output_tokens: int | None) -> int:
        ceiling = min(max_output_tokens or spec.output_token_limit, spec.output_token_limit)
        output = min(ceiling, math.ceil(self._mean.get(spec.id, SEED_OUTPUT_TOKENS)))
        return cost_micro(spec, prompt_tokens, output, images)

    def observe(self, model: str, output_tokens: int) -> None:
        with self._lock:
            mean = self._mean.get(model)
            self._mean[model] = float(output_tokens) if mean is None else (
                mean + OUTPUT_SMOOTHING * (output_tokens - mean))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
