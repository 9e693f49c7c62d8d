"""The quota day: Gemini's per-day limits reset at midnight America/Los_Angeles."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
DAY_MS = 86_400_000


def pacific_offset_ms(at: datetime | None = None) -> int:
    """The Pacific UTC offset in ms at ``at`` (default now); -25_200_000 in summer, -28_800_000 in winter.

    The offset now is also the offset at the next midnight: DST switches at 02:00, never across 00:00.
    """
    offset = (at or datetime.now(UTC)).astimezone(PACIFIC).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds() * 1000)


@lru_cache(maxsize=2)
def _offset_in_hour(utc_hour: int) -> int:
    return pacific_offset_ms(datetime.fromtimestamp(utc_hour * 3600, UTC))


def current_pacific_offset_ms() -> int:
    """``pacific_offset_ms()`` for now, computed once per UTC hour (every acquire passes it).

    Exact: DST switches at 02:00 local, which is a whole UTC hour, so the offset is constant within one.
    """
    return _offset_in_hour(int(time.time() // 3600))


def day_index(now_ms: int, offset_ms: int) -> int:
    return (now_ms + offset_ms) // DAY_MS


def next_midnight_ms(now_ms: int, offset_ms: int) -> int:
    """The next local midnight (epoch ms) for a clock at ``now_ms`` with this UTC offset."""
    return (day_index(now_ms, offset_ms) + 1) * DAY_MS - offset_ms
