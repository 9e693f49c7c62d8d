"""Per-model quota math: exact sliding windows (RPM/TPM/IPM) and a Pacific-midnight daily counter (RPD).

Pure bookkeeping over timestamps passed in by the caller, so tests drive it with a fake clock.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _pacific() -> dt.tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no tz database (no tzdata package, minimal image): PST, ignoring DST
        return dt.timezone(dt.timedelta(hours=-8), "PST")


PACIFIC = _pacific()

# The order in which dimensions are checked; the first violated one names the 429 in logs and stats.
DIMENSIONS = ("rpm", "tpm", "ipm", "rpd")


@dataclass(frozen=True)
class Violation:
    dimension: str  # one of DIMENSIONS
    limit: int
    wait_s: float  # time until this dimension frees enough room for the rejected request


@dataclass(frozen=True)
class Cost:
    requests: int = 1
    tokens: int = 0
    images: int = 0


@dataclass(frozen=True)
class Limits:
    rpm: int = 0  # 0 = unlimited
    tpm: int = 0
    ipm: int = 0
    rpd: int = 0
    window_s: float = 60.0


class SlidingWindow:
    """Amounts admitted at given times; counts those newer than `now - window_s`, and the highest total seen."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0
        self.peak = 0

    def used(self, now_s: float, window_s: float) -> int:
        horizon = now_s - window_s
        while self._events and self._events[0][0] <= horizon:
            self._total -= self._events.popleft()[1]
        return self._total

    def wait_s(self, now_s: float, window_s: float, cost: int, limit: int) -> float | None:
        """None if `cost` fits under `limit` now, else the seconds until enough old events expire."""
        if limit <= 0 or cost <= 0:
            return None
        excess = self.used(now_s, window_s) + cost - limit
        if excess <= 0:
            return None
        if cost > limit:  # can never fit: the best advice is a whole window
            return window_s
        freed = 0
        for at_s, amount in self._events:
            freed += amount
            if freed >= excess:
                return max(0.0, at_s + window_s - now_s)
        return window_s  # unreachable while the totals are consistent

    def add(self, now_s: float, window_s: float, amount: int) -> None:
        if amount <= 0:
            return
        self._events.append((now_s, amount))
        self._total += amount
        self.peak = max(self.peak, self.used(now_s, window_s))


def pacific_day(now_s: float) -> dt.date:
    return dt.datetime.fromtimestamp(now_s, PACIFIC).date()


def seconds_to_pacific_midnight(now_s: float) -> float:
    """Seconds until the next midnight in America/Los_Angeles, when Gemini resets daily quotas."""
    day = pacific_day(now_s) + dt.timedelta(days=1)
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=PACIFIC)
    return max(0.0, midnight.timestamp() - now_s)


@dataclass
class DailyCounter:
    day: dt.date | None = None
    count: int = 0

    def used(self, now_s: float) -> int:
        today = pacific_day(now_s)
        if today != self.day:
            self.day, self.count = today, 0
        return self.count

    def wait_s(self, now_s: float, cost: int, limit: int) -> float | None:
        if limit <= 0 or self.used(now_s) + cost <= limit:
            return None
        return seconds_to_pacific_midnight(now_s)

    def add(self, now_s: float, amount: int) -> None:
        self.used(now_s)
        self.count += amount


@dataclass
class ModelQuota:
    """All quota state of one model (shared by every API key, as Gemini quotas are per project per model)."""

    requests: SlidingWindow = field(default_factory=SlidingWindow)
    tokens: SlidingWindow = field(default_factory=SlidingWindow)
    images: SlidingWindow = field(default_factory=SlidingWindow)
    daily: DailyCounter = field(default_factory=DailyCounter)

    def violations(self, now_s: float, cost: Cost, limits: Limits) -> list[Violation]:
        waits = {
            "rpm": self.requests.wait_s(now_s, limits.window_s, cost.requests, limits.rpm),
            "tpm": self.tokens.wait_s(now_s, limits.window_s, cost.tokens, limits.tpm),
            "ipm": self.images.wait_s(now_s, limits.window_s, cost.images, limits.ipm),
            "rpd": self.daily.wait_s(now_s, cost.requests, limits.rpd),
        }
        return [Violation(dim, getattr(limits, dim), wait) for dim in DIMENSIONS
                if (wait := waits[dim]) is not None]

    def admit(self, now_s: float, cost: Cost, limits: Limits) -> list[Violation]:
        """Consume `cost` if every dimension has room; otherwise consume nothing and say what is exceeded."""
        found = self.violations(now_s, cost, limits)
        if not found:
            self.requests.add(now_s, limits.window_s, cost.requests)
            self.tokens.add(now_s, limits.window_s, cost.tokens)
            self.images.add(now_s, limits.window_s, cost.images)
            self.daily.add(now_s, cost.requests)
        return found

    def occupancy(self, now_s: float, window_s: float) -> dict[str, int]:
        return {"requests": self.requests.used(now_s, window_s), "tokens": self.tokens.used(now_s, window_s),
                "images": self.images.used(now_s, window_s)}

    def peaks(self) -> dict[str, int]:
        return {"requests": self.requests.peak, "tokens": self.tokens.peak, "images": self.images.peak}
