"""The shared per-model rate limiter: limits (``limits``), window math (``strategy``), Redis (``store``)."""

from __future__ import annotations

from genpool.shared.ratelimit.decision import Decision, Status
from genpool.shared.ratelimit.limits import ModelLimits
from genpool.shared.ratelimit.store import LimitsChange, RedisLimiter, Scope

__all__ = ["Decision", "LimitsChange", "ModelLimits", "RedisLimiter", "Scope", "Status"]
