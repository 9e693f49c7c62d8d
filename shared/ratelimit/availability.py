"""Fleet-wide model availability: what one worker learns about a model, every worker knows at once.

A 404 (retired / not found) marks the model unavailable for a long cooldown; repeated 5xx or timeouts
open a circuit breaker for a short cooldown (doubling, up to ``max_open_s``, each time the half-open
probe fails again). Either way the model's state hash (field names: ``state``) carries
``unavailable_until_ms`` and ``half_open``, which the limiter's acquire script honours (one round trip):
workers skip an open model, and after the cooldown exactly one worker probes it. It lives beside the
limiter because the two share that hash and that round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from genpool.shared import keys, luascript
from genpool.shared.errors import LimiterUnavailable
from genpool.shared.ratelimit import state
from genpool.shared.settings import Settings

_SCRIPT = luascript.read("genpool.shared.ratelimit", "lua/breaker.lua")


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    failure_window_s: float = 30.0
    open_s: float = 30.0
    max_open_s: float = 300.0  # each failed half-open probe doubles the open period, up to this
    not_found_open_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerPolicy:
        return cls(failure_threshold=settings.breaker_failures, failure_window_s=settings.breaker_window_s,
                   open_s=settings.breaker_open_s, max_open_s=settings.breaker_max_open_s,
                   not_found_open_s=settings.not_found_open_s)


class Availability:
    def __init__(self, connection: redis.Redis, policy: BreakerPolicy | None = None) -> None:
        self._redis = connection
        self.policy = policy or BreakerPolicy()
        self._script = connection.register_script(_SCRIPT)

    def record_success(self, model: str) -> None:
        self._run(model, "ok", self.policy.open_s, "")

    def record_failure(self, model: str, reason: str, granted_at_ms: int = 0) -> bool:
        """Count a transient failure; True when the model is open after it (opened now or already).

        ``granted_at_ms``: when the failed call was granted (Redis clock; 0 = unknown). A call granted
        before the breaker opened is a straggler of the outage already known: it does not re-open a
        half-open breaker (only the probe's failure does)."""
        return self._run(model, "fail", self.policy.open_s, f"{state.BREAKER_REASON}:{reason}", granted_at_ms)

    def mark_down(self, model: str, reason: str, open_s: float | None = None) -> None:
        """Mark unavailable now (404 retired model: the long cooldown)."""
        self._run(model, "down", open_s if open_s is not None else self.policy.not_found_open_s, reason)

    def state(self, model: str) -> dict[str, str]:
        raw = self._redis.hgetall(keys.model_state(model))
        return {_text(k): _text(v) for k, v in raw.items()}

    def _run(self, model: str, outcome: str, open_s: float, reason: str, granted_at_ms: int = 0) -> bool:
        p = self.policy
        try:
            opened = self._script(keys=[keys.model_state(model)], args=[
                outcome, p.failure_threshold, int(p.failure_window_s * 1000), int(open_s * 1000), reason,
                int(p.max_open_s * 1000), granted_at_ms])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise LimiterUnavailable(f"cannot reach Redis to record model availability: {exc}") from exc
        return bool(opened)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
