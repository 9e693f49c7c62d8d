"""Load for bench_gateway, in a process of its own so its CPU is not the gateway's.

    python -m bench.gateway_clients sockets --url URL --token T --count 1000 --ping-rate 200 --chat-rate 10 --seconds 30
    python -m bench.gateway_clients first-chunk --url URL --token T --count 30

``sockets`` opens ``count`` WebSockets, prints {"opened": N, "connect_s": S}, waits for a line on stdin
(the parent reads the gateway's memory), then for ``seconds`` sends pings at ``ping-rate`` per second and
chat messages at ``chat-rate`` per second, spread over random sockets, and prints the latencies (JSON).
``first-chunk`` sends ``count`` messages one at a time and prints send -> typing / first chunk / answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def quantiles_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


class Socket:
    """One connection: sends, and resolves what it waits for as replies come in."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.turn: dict[str, Any] | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            now = time.perf_counter()
            if message["type"] == "pong":
                future = self.waiting.pop(str(message["ref"]), None)
                if future is not None and not future.done():
                    future.set_result(now)
            elif self.turn is not None:
                self.turn.setdefault(message["type"], now)
                if message["type"] in ("message", "error"):
                    self.turn["done"].set_result(now)

    async def ping(self, ref: str) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[ref] = future
        sent = time.perf_counter()
        await self.ws.send(json.dumps({"type": "ping", "ref": ref}))
        return await asyncio.wait_for(future, 60) - sent

    async def chat(self, text: str) -> dict[str, float]:
        self.turn = {"done": asyncio.get_running_loop().create_future()}
        sent = time.perf_counter()
        await self.ws.send(json.dumps({"type": "message", "message": text}))
        await asyncio.wait_for(self.turn["done"], 120)
        turn, self.turn = self.turn, None
        if "message" not in turn:
            raise RuntimeError("a chat turn ended with an error")
        return {k: turn[k] - sent for k in ("typing", "chunk", "message") if k in turn}


async def open_sockets(url: str, token: str, count: int, prefix: str) -> list[Socket]:
    headers = {"Authorization": f"Bearer {token}"}

    async def one(i: int) -> Socket:
        ws = await connect(f"{url}/v1/conversations/{prefix}-{i}", additional_headers=headers, proxy=None,
                           open_timeout=120, ping_interval=None, max_queue=None)
        return Socket(ws)

    sockets: list[Socket] = []
    for start in range(0, count, 100):  # a hundred handshakes at a time
        sockets += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    return sockets


async def paced(rate: float, seconds: float, action: Any) -> list[Any]:
    """Start ``action(n)`` ``rate`` times a second for ``seconds`` (open loop), then gather the results."""
    tasks = []
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(action(n)))
    return list(await asyncio.gather(*tasks))


async def run_sockets(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    sockets = await open_sockets(args.url, args.token, args.count, "hold")
    print(json.dumps({"opened": len(sockets), "connect_s": round(time.perf_counter() - began, 2)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    rng = random.Random(7)
    busy: set[int] = set()

    async def ping(n: int) -> float:
        return await sockets[rng.randrange(len(sockets))].ping(str(n))

    async def chat(n: int) -> dict[str, float]:
        index = rng.choice([i for i in range(len(sockets)) if i not in busy])  # one turn per socket at a time
        busy.add(index)
        try:
            return await sockets[index].chat(f"message {n}: how is the weather?")
        finally:
            busy.discard(index)

    pings, chats = await asyncio.gather(paced(args.ping_rate, args.seconds, ping),
                                        paced(args.chat_rate, args.seconds, chat))
    still_open = sum(1 for s in sockets if s.ws.state.name == "OPEN")
    for s in sockets:
        await s.ws.close()
    return {"sockets": len(sockets), "still_open": still_open, "ping_rate": args.ping_rate,
            "chat_rate": args.chat_rate, "seconds": args.seconds, "ping_rtt": quantiles_ms(pings),
            "chat_typing": quantiles_ms([c["typing"] for c in chats]),
            "chat_first_chunk": quantiles_ms([c["chunk"] for c in chats if "chunk" in c]),
            "chat_answer": quantiles_ms([c["message"] for c in chats])}


async def run_first_chunk(args: argparse.Namespace) -> dict[str, Any]:
    turns = []
    for i in range(args.count):  # a fresh conversation each time: the same prompt, no history
        (socket,) = await open_sockets(args.url, args.token, 1, f"ttfc-{i}")
        turns.append(await socket.chat("Describe a lighthouse at dusk."))
        await socket.ws.close()
    return {"typing": quantiles_ms([t["typing"] for t in turns]),
            "first_chunk": quantiles_ms([t["chunk"] for t in turns]),
            "answer": quantiles_ms([t["message"] for t in turns])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sockets", "first-chunk"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--ping-rate", type=float, default=200)
    parser.add_argument("--chat-rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runner = run_sockets if args.mode == "sockets" else run_first_chunk
    print(json.dumps(asyncio.run(runner(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
