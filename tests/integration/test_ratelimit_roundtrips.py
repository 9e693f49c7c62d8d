"""One acquire is one round trip: one reply read by the client, one EVALSHA run by the server."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from genpool.shared.ratelimit import ModelLimits, RedisLimiter

pytestmark = pytest.mark.integration


class CountingConnection(redis.Connection):
    replies = 0

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        CountingConnection.replies += 1
        return super().read_response(*args, **kwargs)


def _server_calls(client: redis.Redis) -> dict[str, int]:
    return {name: int(stats["calls"]) for name, stats in client.info("commandstats").items()}


def test_one_round_trip_per_acquire(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    limiter = RedisLimiter(client, {"m": ModelLimits(rpm=10**6, tpm=10**9, rpd=10**6, ipm=10**6)})
    assert limiter.acquire("m", tokens=10).granted  # first call: seed + NOSCRIPT + load, once
    before_server, before_replies = _server_calls(client), CountingConnection.replies
    for _ in range(50):
        assert limiter.acquire("m", tokens=10, images=1).granted
    after_server, replies = _server_calls(client), CountingConnection.replies - before_replies - 1
    client_issued = {"cmdstat_evalsha", "cmdstat_script|load", "cmdstat_eval", "cmdstat_info"}
    delta = {name: after_server.get(name, 0) - before_server.get(name, 0) for name in client_issued}
    assert replies == 50  # the INFO above is the one extra reply
    assert delta == {"cmdstat_evalsha": 50, "cmdstat_script|load": 0, "cmdstat_eval": 0, "cmdstat_info": 1}
    client.close()
