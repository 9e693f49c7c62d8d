"""Redis down or silent: every limiter call fails closed with LimiterUnavailable."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from genpool.devstack.services import free_port
from genpool.shared.errors import LimiterUnavailable, Retryable
from genpool.shared.ratelimit import ModelLimits, RedisLimiter

CALLS: dict[str, Callable[[RedisLimiter], object]] = {
    "acquire": lambda lim: lim.acquire("m", tokens=10),
    "settle": lambda lim: lim.settle("m", 10, 5),
    "release": lambda lim: lim.release("m"),
    "penalize": lambda lim: lim.penalize("m", 1000),
    "levels": lambda lim: lim.levels("m"),
    "seed": lambda lim: lim.seed("m", ModelLimits(rpm=1)),
    "set_limits": lambda lim: lim.set_limits("m", rpm=1),
    "get_limits": lambda lim: lim.get_limits("m"),
}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections and never answers: every command times out."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def _limiter(port: int) -> RedisLimiter:
    # No client-side retries: redis-py 8 retries 10 times with backoff by default (~5 s to fail).
    client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    return RedisLimiter(client, {"m": ModelLimits(rpm=10)})


@pytest.mark.parametrize("call", CALLS)
def test_closed_port_is_limiter_unavailable(call: str) -> None:
    with pytest.raises(LimiterUnavailable) as info:
        CALLS[call](_limiter(free_port()))
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert isinstance(info.value, Retryable)


def test_silent_server_times_out_as_limiter_unavailable(silent_port: int) -> None:
    with pytest.raises(LimiterUnavailable) as info:
        _limiter(silent_port).acquire("m")
    assert isinstance(info.value.__cause__, redis.TimeoutError)
