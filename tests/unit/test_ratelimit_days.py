"""The quota day turns at midnight America/Los_Angeles, summer and winter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genpool.shared.ratelimit.days import (
    DAY_MS,
    _offset_in_hour,
    current_pacific_offset_ms,
    day_index,
    next_midnight_ms,
    pacific_offset_ms,
)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_offsets_summer_and_winter() -> None:
    assert pacific_offset_ms(datetime(2026, 7, 1, tzinfo=UTC)) == -7 * 3_600_000
    assert pacific_offset_ms(datetime(2026, 1, 1, tzinfo=UTC)) == -8 * 3_600_000


def test_next_midnight_is_pacific_midnight() -> None:
    now = datetime(2026, 7, 1, 20, 30, tzinfo=UTC)  # 13:30 PDT on 1 July
    midnight = next_midnight_ms(_ms(now), pacific_offset_ms(now))
    assert midnight == _ms(datetime(2026, 7, 2, 7, 0, tzinfo=UTC))  # 00:00 PDT on 2 July


def test_next_midnight_on_a_dst_day() -> None:
    now = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # 05:00 PDT, hours after the 02:00 switch
    assert next_midnight_ms(_ms(now), pacific_offset_ms(now)) == _ms(datetime(2026, 3, 9, 7, 0, tzinfo=UTC))
    before = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 23:30 PST on 7 March, before the switch
    assert next_midnight_ms(_ms(before), pacific_offset_ms(before)) == _ms(datetime(2026, 3, 8, 8, 0, tzinfo=UTC))


def test_day_index_turns_exactly_at_midnight() -> None:
    midnight = _ms(datetime(2026, 7, 2, 7, 0, tzinfo=UTC))
    offset = -7 * 3_600_000
    assert day_index(midnight, offset) == day_index(midnight - 1, offset) + 1
    assert next_midnight_ms(midnight, offset) == midnight + DAY_MS


@pytest.mark.parametrize("day", [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)])
def test_offset_is_constant_within_each_utc_hour_across_dst_days(day: datetime) -> None:
    """current_pacific_offset_ms caches per UTC hour: every minute of a DST day must agree with it."""
    for minute in range(0, 2 * 24 * 60, 7):
        at = day + timedelta(minutes=minute)
        assert pacific_offset_ms(at) == _offset_in_hour(int(at.timestamp()) // 3600), at


def test_current_offset_is_the_offset_now() -> None:
    assert current_pacific_offset_ms() == pacific_offset_ms()
