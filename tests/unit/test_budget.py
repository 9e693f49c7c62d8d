"""Budgets, pure parts: money in micro-USD, the record's day and verdicts, the twin, the cost estimate."""

from __future__ import annotations

import pytest

from genpool.shared.budget import (
    EXHAUSTED,
    HELD,
    HELD_WAIT_MS,
    HOLD_MAX_MS,
    SEED_OUTPUT_TOKENS,
    BudgetRecord,
    CostEstimator,
    ReferenceBudget,
    alert_level,
    check,
    cost_micro,
    parse_usd,
)
from genpool.shared.catalog import ModelSpec
from genpool.shared.errors import ValidationError
from genpool.shared.ratelimit.days import DAY_MS, day_index, next_midnight_ms

OFFSET = -28_800_000  # Pacific winter
SPEC = ModelSpec(id="m", price_input_per_mtok=0.5, price_output_per_mtok=2.0, output_token_limit=8192)
IMAGE = ModelSpec(id="img", kind="image", price_per_image=0.039)


class Clock:
    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_usd_text_becomes_micro_usd() -> None:
    assert parse_usd("25") == 25_000_000 and parse_usd("$2.50") == 2_500_000 and parse_usd(" 0.000001 ") == 1
    assert parse_usd("none") == parse_usd("off") == parse_usd("0") == 0
    for bad in ("lots", "-1", "nan"):
        with pytest.raises(ValidationError):
            parse_usd(bad)


def test_a_price_per_million_tokens_is_micro_usd_per_token() -> None:
    assert cost_micro(SPEC, 1000, 500) == 1000 * 0.5 + 500 * 2  # 1,500 micro-USD
    assert cost_micro(SPEC, 1, 0) == 1  # rounded up: a fraction of a micro-USD is charged whole
    assert cost_micro(IMAGE, 10, 0, images=1) == 39_000
    assert cost_micro(ModelSpec(id="free"), 10_000, 10_000) == 0


def test_alert_levels() -> None:
    assert [alert_level(spent, 1000) for spent in (0, 499, 500, 799, 800, 999, 1000, 5000)] == [
        0, 0, 50, 50, 80, 80, 100, 100]
    assert alert_level(10, 0) == 0  # no budget, no alerts


def test_the_verdict_spent_then_held_then_free() -> None:
    assert BudgetRecord(limit=0, spent=10**9).verdict() == ""
    assert BudgetRecord(limit=100, spent=100).verdict() == EXHAUSTED
    assert BudgetRecord(limit=100, spent=60, held=40).verdict() == HELD
    assert BudgetRecord(limit=100, spent=60, held=39).verdict() == ""


def test_a_new_day_starts_over_and_an_old_hold_is_dropped() -> None:
    now = 1_800_000_000_000
    today = day_index(now, OFFSET)
    record = BudgetRecord(limit=100, day=today - 1, spent=100, held=7, held_ms=now - 1000, alerted=100)
    assert record.today(today, now) == BudgetRecord(limit=100, day=today, spent=0, held=0, held_ms=now - 1000)
    stale = BudgetRecord(limit=100, day=today, spent=5, held=50, held_ms=now - HOLD_MAX_MS - 1)
    assert stale.today(today, now).held == 0 and stale.today(today, now).spent == 5


def test_the_twin_holds_settles_and_alerts_once_per_level() -> None:
    clock = Clock()
    budget = ReferenceBudget(1000, clock, OFFSET)
    budget.hold(600)
    assert budget.current().held == 600 and check([budget], clock(), OFFSET) == ("", 0)
    budget.hold(400)
    assert check([budget], clock(), OFFSET) == (HELD, HELD_WAIT_MS)
    assert budget.settle(600, 550) == 50  # 55 %: the 50 % level, once
    assert budget.settle(400, 300) == 80
    assert budget.current().spent == 850 and budget.current().held == 0
    assert budget.settle(0, 10) == 0  # still 80 %: no second alert
    assert budget.settle(0, 140) == 100
    verdict, wait_ms = check([budget], clock(), OFFSET)
    assert verdict == EXHAUSTED and wait_ms == next_midnight_ms(clock(), OFFSET) - clock()
    clock.now_ms += DAY_MS
    assert check([budget], clock(), OFFSET) == ("", 0)  # a new Pacific day


def test_spent_wins_over_held_across_budgets() -> None:
    clock = Clock()
    model, pool = ReferenceBudget(100, clock, OFFSET), ReferenceBudget(1000, clock, OFFSET)
    model.hold(100)
    assert check([model, pool], clock(), OFFSET)[0] == HELD
    pool.settle(0, 1000)
    assert check([model, pool], clock(), OFFSET)[0] == EXHAUSTED


def test_setting_a_limit_counts_what_was_spent_today() -> None:
    clock = Clock()
    budget = ReferenceBudget(0, clock, OFFSET)
    budget.set(1000, seed=850)
    assert budget.current().spent == 850 and budget.current().alerted == 80  # the next alert is 100 %
    budget.set(2000)
    assert budget.current().spent == 850 and budget.current().alerted == 0  # raised: 50 % is ahead again


def test_the_output_estimate_starts_at_the_seed_then_follows_the_answers() -> None:
    estimator = CostEstimator()
    assert estimator.estimate(SPEC, 100, 0, None) == cost_micro(SPEC, 100, SEED_OUTPUT_TOKENS)
    assert estimator.estimate(SPEC, 100, 0, 64) == cost_micro(SPEC, 100, 64)  # the job's own ceiling
    estimator.observe("m", 40)
    assert estimator.estimate(SPEC, 100, 0, None) == cost_micro(SPEC, 100, 40)  # the first answer
    for _ in range(30):
        estimator.observe("m", 140)
    assert cost_micro(SPEC, 100, 139) <= estimator.estimate(SPEC, 100, 0, None) <= cost_micro(SPEC, 100, 140)
    assert estimator.estimate(IMAGE, 10, 1, None) >= 39_000
