"""The sliding-window audit: the most any trailing window admitted (for tests and reports)."""

from __future__ import annotations

from collections.abc import Iterable


def max_window_sum(events: Iterable[tuple[int, float]], window_ms: int) -> float:
    """Largest total of ``(at_ms, amount)`` events inside any trailing window ``(t - window_ms, t]``: the
    provider's own window (an event at ``t - window_ms`` has left it; the simulator counts the same way)."""
    ordered = sorted(events)
    best = total = 0.0
    start = 0
    for at_ms, amount in ordered:
        total += amount
        while ordered[start][0] <= at_ms - window_ms:
            total -= ordered[start][1]
            start += 1
        best = max(best, total)
    return best
