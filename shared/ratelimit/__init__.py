"""The shared per-model rate limiter: limits (``limits``), window math (``strategy``), Redis (``store``)."""

from __future__ import annotations

from shared.ratelimit.decision import Decision, Status
from shared.ratelimit.limits import ModelLimits
from shared.ratelimit.store import LimitsChange, RedisLimiter, Scope

__all__ = ["Decision", "LimitsChange", "ModelLimits", "RedisLimiter", "Scope", "Status"]
