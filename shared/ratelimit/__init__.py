"""The shared per-model rate limiter: limits (``limits``), bucket math (``strategy``), Redis (``store``)."""

from __future__ import annotations

from genpool.shared.ratelimit.decision import Decision, Status
from genpool.shared.ratelimit.limits import ModelLimits
from genpool.shared.ratelimit.store import RedisLimiter, Scope

__all__ = ["Decision", "ModelLimits", "RedisLimiter", "Scope", "Status"]
