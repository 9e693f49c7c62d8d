"""A model's fleet-wide state, read from its state hash (the breaker and the limiter's 429 cooldown)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from genpool.shared.ratelimit import state as f

#: closed: in use; open: the breaker tripped on 5xx/timeouts; half-open: one probe may go through;
#: down: marked unavailable (404, retired model) for a long cooldown.
STATES = ("closed", "open", "half-open", "down")
BREAKER_REASON = f.BREAKER_REASON


@dataclass(frozen=True)
class ModelState:
    state: str
    until_s: float | None  # when open/down ends (half-open: when the current probe's slot ends)
    reason: str
    cooldown_until_s: float | None  # a 429 cooled the fleet down until then (independent of ``state``)


def classify(raw: Mapping[str, str], now_ms: int) -> ModelState:
    until_ms = float(raw.get(f.UNAVAILABLE_UNTIL_MS) or 0)
    reason = raw.get(f.UNAVAILABLE_REASON, "")
    cooldown_ms = float(raw.get(f.COOLDOWN_UNTIL_MS) or 0)
    cooldown_until_s = cooldown_ms / 1000 if cooldown_ms > now_ms else None
    if now_ms < until_ms:
        state = "open" if reason.startswith(BREAKER_REASON) else "down"
        return ModelState(state, until_ms / 1000, reason, cooldown_until_s)
    if raw.get(f.HALF_OPEN) == "1":
        probe_ms = float(raw.get(f.PROBE_UNTIL_MS) or 0)
        return ModelState("half-open", probe_ms / 1000 if probe_ms > now_ms else None, reason, cooldown_until_s)
    return ModelState("closed", None, "", cooldown_until_s)
