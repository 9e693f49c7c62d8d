"""Limiter throughput vs PING on the same connection, and round trips per acquire.

    .venv/bin/python -m bench.bench_limiter [--redis-url URL] [--ops N] [--rounds R] [--json PATH]

Without ``--redis-url`` it starts its own redis-server (``devstack.services.start_redis``).
``run(redis_url)`` returns the figures as a dict for a ``make bench`` driver.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from devstack import services
from shared import keys
from shared.ratelimit import ModelLimits, RedisLimiter

# Limits far above what one client can ask for: every acquire runs the full path and is granted.
HUGE = ModelLimits(rpm=10**9, tpm=10**12, rpd=10**9, ipm=10**9)

# The same Redis calls acquire.lua cannot do without (clock, three hashes, one write), no math:
# the best any one-script design over this key layout can do. Not a limiter; a yardstick.
FLOOR_LUA = """
local t = redis.call('TIME')
redis.call('HMGET', KEYS[1], 'rpm', 'tpm', 'ipm', 'rpd', 'window_ms', 'safety', 'burst', 'token_burst')
redis.call('HMGET', KEYS[2], 'ts_ms', 'rpm', 'tpm', 'ipm', 'rpd_day', 'rpd_count')
redis.call('HMGET', KEYS[3], 'unavailable_until_ms', 'unavailable_reason', 'half_open', 'probe_until_ms',
           'cooldown_until_ms')
redis.call('HSET', KEYS[2], 'ts_ms', t[1], 'rpm', '1.5', 'tpm', '2.5', 'ipm', '3.5', 'rpd_day', '1', 'rpd_count', '1')
return 'granted|0|0|0|0|'
"""


class CountingConnection(redis.Connection):
    """Counts replies read: one per round trip."""

    replies = 0

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        CountingConnection.replies += 1
        return super().read_response(*args, **kwargs)


def _ops_per_s(op: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        op()
    return count / (time.perf_counter() - started)


def throughput(client: redis.Redis, limiter: RedisLimiter, model: str, ops: int, rounds: int) -> dict[str, float]:
    """Median ops/s over interleaved rounds (the order rotates so no side always gets the warm turn)."""
    floor = client.register_script(FLOOR_LUA)
    floor_keys = [keys.model_limits(model), keys.model_bucket(model), keys.model_state(model)]
    ops_by_name: dict[str, Callable[[], object]] = {
        "ping": client.ping,
        "acquire": lambda: limiter.acquire(model, tokens=1000, images=1),
        "floor": lambda: floor(keys=floor_keys, args=(1, 1000, 1, 0, -28_800_000, 30_000)),
    }
    names = list(ops_by_name)
    results: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % 3:] + names[:i % 3]:
            results[name].append(_ops_per_s(ops_by_name[name], ops))
    ping, acq, flo = (statistics.median(results[name]) for name in ("ping", "acquire", "floor"))
    return {"ping_ops_s": round(ping), "acquire_ops_s": round(acq), "ratio": round(acq / ping, 3),
            "floor_ops_s": round(flo), "floor_ratio": round(flo / ping, 3)}


def round_trips(client: redis.Redis, limiter: RedisLimiter, model: str, ops: int) -> dict[str, float]:
    """Client: replies read per acquire. Server (INFO commandstats): EVALSHA calls and CPU us per acquire."""
    before_calls, before_usec = _evalsha_stats(client)
    before_replies = CountingConnection.replies
    for _ in range(ops):
        limiter.acquire(model, tokens=10)
    replies = CountingConnection.replies - before_replies
    after_calls, after_usec = _evalsha_stats(client)
    calls = after_calls - before_calls
    return {"replies_per_acquire": replies / ops, "evalsha_per_acquire": calls / ops,
            "server_us_per_acquire": round((after_usec - before_usec) / calls, 1)}


def _evalsha_stats(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def run(redis_url: str, ops: int = 5000, rounds: int = 5) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    model = f"bench-{uuid.uuid4().hex[:8]}"
    limiter = RedisLimiter(client, {model: HUGE})
    try:
        for _ in range(1000):  # warm up: connection, script load, seed, CPU caches
            client.ping()
            limiter.acquire(model, tokens=1000, images=1)
        figures: dict[str, Any] = {"ops": ops, "rounds": rounds}
        figures.update(throughput(client, limiter, model, ops, rounds))
        figures.update(round_trips(client, limiter, model, 1000))
        figures["redis_version"] = client.info("server")["redis_version"]
        return figures
    finally:
        client.close()


TITLE = "Limiter: acquire vs PING (target 5: one round trip, >= 0.8x PING)"


def bench(workdir: Path) -> dict[str, Any]:
    """The `make bench` entry: a private redis-server, the default sizes."""
    service = services.start_redis(appendonly=False)
    try:
        return run(service.url)
    finally:
        service.stop()


def markdown(figures: dict[str, Any]) -> str:
    f = figures
    return "\n".join([
        f"| redis {f['redis_version']}, one connection, sequential, median of {f['rounds']} x {f['ops']} | ops/s | vs PING |",
        "|---|---:|---:|",
        f"| PING | {f['ping_ops_s']:,} | 1.00x |",
        f"| acquire (1 EVALSHA) | {f['acquire_ops_s']:,} | {f['ratio']:.2f}x |",
        f"| floor: the same 5 Redis calls, no math | {f['floor_ops_s']:,} | {f['floor_ratio']:.2f}x |",
        "",
        f"Round trips per acquire: {f['replies_per_acquire']:.2f} (client replies), "
        f"{f['evalsha_per_acquire']:.2f} (server EVALSHA). Redis CPU per acquire: {f['server_us_per_acquire']} us.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="an existing Redis; default: start a private redis-server")
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    service = None if args.redis_url else services.start_redis(appendonly=False)
    try:
        figures = run(args.redis_url or service.url, args.ops, args.rounds)  # type: ignore[union-attr]
    finally:
        if service is not None:
            service.stop()
    print(markdown(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures["replies_per_acquire"] == 1 and figures["evalsha_per_acquire"] == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
