"""The Redis client every genpool process builds: timeouts from Settings and a short retry.

redis-py's default retry spends seconds (three tries, backoff up to 10 s) on every command while Redis
is down. genpool retries a dropped connection briefly (a restarted Redis is reconnected to at once) and
otherwise lets the outage surface fast as ServiceUnavailable / LimiterUnavailable, where it is handled:
a producer gets a clear error, a worker puts the job back on the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from genpool.shared.settings import Settings

RETRIES = 2  # after the first try
BACKOFF_CAP_S = 0.25


def short_retry() -> Retry:
    """At most ~0.3 s of retrying, and only for connection errors (a timeout already waited its time)."""
    return Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=0.05), RETRIES, supported_errors=(redis.ConnectionError,))


def connect(settings: Settings, pool_size: int = 0) -> redis.Redis:
    """A client for REDIS_URL (redis://, rediss:// for TLS, user:password@ for ACLs)."""
    kwargs = {"max_connections": pool_size} if pool_size else {}
    return redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                socket_connect_timeout=settings.redis_timeout_s, health_check_interval=30,
                                retry_on_timeout=False, retry=short_retry(), **kwargs)
