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
from shared.ratelimit import ModelLimits, RedisLimiter

# Limits far above what one client can ask for: every acquire runs the full path and is granted.
HUGE = ModelLimits(rpm=10**9, tpm=10**12, rpd=10**9, ipm=10**9)


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
    """Median ops/s over interleaved rounds (the order alternates so neither side gets the warm turn)."""
    ops_by_name: dict[str, Callable[[], object]] = {
        "ping": client.ping, "acquire": lambda: limiter.acquire(model, tokens=1000, images=1)}
    results: dict[str, list[float]] = {"ping": [], "acquire": []}
    for i in range(rounds):
        for name in ("ping", "acquire") if i % 2 == 0 else ("acquire", "ping"):
            results[name].append(_ops_per_s(ops_by_name[name], ops))
    pings, acquires = results["ping"], results["acquire"]
    ping, acq = statistics.median(pings), statistics.median(acquires)
    return {"ping_ops_s": round(ping), "acquire_ops_s": round(acq), "ratio": round(acq / ping, 3)}


def round_trips(client: redis.Redis, limiter: RedisLimiter, model: str, ops: int) -> dict[str, float]:
    """Client side: replies read per acquire. Server side: EVALSHA calls per acquire (INFO commandstats)."""
    before_evalsha = _evalsha_calls(client)
    before_replies = CountingConnection.replies
    for _ in range(ops):
        limiter.acquire(model, tokens=10)
    replies = CountingConnection.replies - before_replies
    evalsha = _evalsha_calls(client) - before_evalsha
    return {"replies_per_acquire": replies / ops, "evalsha_per_acquire": evalsha / ops}


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


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


def markdown(figures: dict[str, Any]) -> str:
    return "\n".join([
        f"| (redis {figures['redis_version']}, {figures['rounds']} rounds x {figures['ops']} ops, sequential) | ops/s |",
        "|---|---:|",
        f"| PING | {figures['ping_ops_s']:,} |",
        f"| acquire (1 EVALSHA) | {figures['acquire_ops_s']:,} |",
        f"| acquire / PING | {figures['ratio']:.2f}x |",
        f"| round trips per acquire (client replies / server EVALSHA) | "
        f"{figures['replies_per_acquire']:.2f} / {figures['evalsha_per_acquire']:.2f} |",
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
