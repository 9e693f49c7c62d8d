"""The shared per-model rate limiter: limits (``limits``), bucket math (``strategy``), Redis (``store``)."""

from __future__ import annotations

from shared.ratelimit.decision import Decision, Status
from shared.ratelimit.limits import ModelLimits
from shared.ratelimit.store import RedisLimiter, Scope

__all__ = ["Decision", "ModelLimits", "RedisLimiter", "Scope", "Status"]
