"""Run-time controls (#16): the response cache on 1,000 jobs with 50 % duplicates, cache on vs off in one run,
and what budgets cost the limiter's acquire in Redis instructions.

    .venv/bin/python -m bench.bench_control [--json PATH]

Cache: one stack (redis-server, moto's S3 server, the simulator at 800 +- 200 ms), 2 worker processes x 32
job threads, the default catalog's prices. Each round submits 1,000 text jobs at once: 500 distinct prompts,
each twice, in a shuffled order; rounds alternate cache off / on (``cache`` per job), each on prompts of its
own (same lengths: same cost per call). Paid calls are the simulator's request count (what a bill would
count); makespan runs from the submit to the last record; cost is the records' ``cost_usd`` (0 for a hit).

Limiter: callgrind on a redis-server of its own (instructions are repeatable where wall time on a shared
2-core box is not): acquire, and acquire + settle, with no budget set and with a model and a pool budget.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY, SimAdmin, WorkerGroup, create_bucket, stack_env

TITLE = "Run-time controls: the response cache (1,000 jobs, 50 % duplicates, on vs off) and what budgets cost acquire"
MODEL = "gemini-3.1-flash-lite"
JOBS, DISTINCT = 1000, 500
WORKERS, CONCURRENCY = 2, 32
LATENCY_MS, JITTER_MS = 800, 200
ROUNDS = ("off", "on", "off", "on")
CALLGRIND_CALLS = 400


def catalog(workdir: Path) -> Path:
    """One text model with the default catalog's price, limits far above the run (the limiter never binds)."""
    path = workdir / "catalog.toml"
    path.write_text("\n".join([
        f'[models."{MODEL}"]', "rpm = 1000000", "tpm = 1000000000", "price_input_per_mtok = 0.10",
        "price_output_per_mtok = 0.40", "", "[models.\"gemini-3.1-flash-image\"]", 'kind = "image"', "",
        "[chains]", *[f'{kind} = ["{MODEL}"]' for kind in ("text", "chat", "json")],
        'image = ["gemini-3.1-flash-image"]', ""]))
    return path


@contextmanager
def running_stack(workdir: Path) -> Iterator[tuple[dict[str, str], SimAdmin]]:
    workdir.mkdir(parents=True, exist_ok=True)
    sim_config = workdir / "sim.json"
    sim_config.write_text(json.dumps({"api_keys": [SIM_KEY], "defaults": {"latency_ms": LATENCY_MS,
                                                                          "jitter_ms": JITTER_MS}}))
    started: list[services.Service] = []
    try:
        started.append(services.start_redis(workdir=workdir / "redis", appendonly=False))
        started.append(services.start_s3(workdir=workdir / "s3"))
        started.append(services.start_sim(sim_config, workdir=workdir / "sim"))
        env = stack_env(started[0].url, started[1].url, started[2].url, SIM_KEY, workdir,
                        GENPOOL_MODELS_FILE=str(catalog(workdir)), GENPOOL_LOG_LEVEL="WARNING")
        create_bucket(env)
        yield env, SimAdmin(started[2].url)
    finally:
        for service in reversed(started):
            service.stop()


def prompts(round_no: int, seed: int) -> list[str]:
    """500 distinct prompts, each twice, shuffled: half the jobs repeat one submitted before or beside them."""
    distinct = [f"round {round_no:02d} question {i:04d}: summarise the history of message queues" for i in range(DISTINCT)]
    jobs = distinct * (JOBS // DISTINCT)
    random.Random(seed).shuffle(jobs)
    return jobs


def run_round(pool: Any, sim: SimAdmin, round_no: int, mode: str) -> dict[str, Any]:
    before = sim.stats()["models"].get(MODEL, {}).get("requests", 0)
    requests = [{"kind": "text", "prompt": p, "cache": mode == "on"} for p in prompts(round_no, seed=round_no)]
    started, submitted_at = time.monotonic(), time.time()
    handles = pool.submit_many(requests)
    records = pool.wait_all(handles, timeout_s=600)
    makespan = max(r.finished_at for r in records if r) - submitted_at
    paid = sim.stats()["models"].get(MODEL, {}).get("requests", 0) - before
    hits = [r for r in records if r and r.cache_hit]
    waited = sum(1 for r in hits if r.duration_s > 0.1)  # served after waiting for a leader in flight
    return {"mode": mode, "jobs": len(records), "finished": sum(1 for r in records if r and r.status == "finished"),
            "paid_calls": paid, "unique_prompts": DISTINCT, "cache_hits": len(hits), "hits_after_waiting": waited,
            "makespan_s": round(makespan, 2), "wall_s": round(time.monotonic() - started, 2),
            "cost_usd": round(sum(r.cost_usd for r in records if r), 6)}


def cache_rounds(workdir: Path) -> list[dict[str, Any]]:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    with running_stack(workdir) as (env, sim):
        workers = WorkerGroup(env, workdir)
        workers.start(WORKERS, concurrency=CONCURRENCY)
        try:
            pool = GenPool.from_env(Settings.from_env(env, dotenv_path=None))
            pool.wait_all(pool.submit_many([{"kind": "text", "prompt": f"warm up {i}"} for i in range(64)]),
                          timeout_s=120)
            return [run_round(pool, sim, n, mode) for n, mode in enumerate(ROUNDS)]
        finally:
            workers.stop()


# --- budgets: Redis instructions per acquire (callgrind) ----------------------------------------------


def instructions(prepare: Callable[[redis.Redis], Callable[[], object]], name: str, workdir: Path) -> float:
    """Instructions redis-server runs per call of ``prepare``'s operation (callgrind, instrumented only
    around the measured calls)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    out = workdir / f"callgrind.{name}.%p"
    for stale in glob.glob(str(workdir / f"callgrind.{name}.*")):
        Path(stale).unlink()
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                             "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(300):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        call = prepare(client)
        for _ in range(50):
            call()
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        for _ in range(CALLGRIND_CALLS):
            call()
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    total = 0
    for path in glob.glob(str(workdir / f"callgrind.{name}.*")):
        found = re.search(r"^totals:\s+(\d+)", Path(path).read_text(), re.M)
        total += int(found.group(1)) if found else 0
    return total / CALLGRIND_CALLS


def limiter_operations(budget: bool, settle: bool) -> Callable[[redis.Redis], Callable[[], object]]:
    from genpool.shared.ratelimit import ModelLimits, RedisLimiter
    from genpool.shared.ratelimit.budgets import BudgetStore, BudgetView

    def prepare(client: redis.Redis) -> Callable[[], object]:
        view = BudgetView()
        if budget:
            store = BudgetStore(client)
            store.set("m", 10**15)
            store.set("pool", 10**15)
            view.update(*store.registry())
        huge = ModelLimits(rpm=10**9, tpm=10**12, rpd=10**9, ipm=10**9)
        limiter = RedisLimiter(client, {"m": huge}, budgets=view)

        def call() -> object:
            d = limiter.acquire("m", tokens=1000, images=1, cost_micro=5)
            return limiter.settle("m", d.start_at_ms, 1000, 900, hold=d.hold, actual_micro=4) if settle else d

        return call

    return prepare


def budget_costs(workdir: Path) -> dict[str, float] | None:
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    return {f"{op}, {'model + pool budget' if budget else 'no budget set'}":
            round(instructions(limiter_operations(budget, op != "acquire"), f"{len(op)}-{budget:d}", workdir))
            for op in ("acquire", "acquire + settle") for budget in (False, True)}


def bench(workdir: Path) -> dict[str, Any]:
    return {"rounds": cache_rounds(workdir / "control"), "instructions": budget_costs(workdir / "control-cg"),
            "config": {"jobs": JOBS, "distinct": DISTINCT, "workers": WORKERS, "concurrency": CONCURRENCY,
                       "latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS, "model": MODEL}}


def _median(rows: list[dict[str, Any]], key: str) -> float:
    values = sorted(r[key] for r in rows)
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


def markdown(figures: dict[str, Any]) -> str:
    c = figures["config"]
    on = [r for r in figures["rounds"] if r["mode"] == "on"]
    off = [r for r in figures["rounds"] if r["mode"] == "off"]
    exact = all(r["paid_calls"] == r["unique_prompts"] for r in on)
    lines = [
        f"{c['jobs']} text jobs per round submitted at once ({c['distinct']} distinct prompts, each twice, shuffled), "
        f"{c['workers']} worker processes x {c['concurrency']} job threads, simulator {c['latency_ms']} +- "
        f"{c['jitter_ms']} ms, {c['model']} at the catalog's price; rounds alternate cache off / on.",
        "",
        "| round | cache | finished | paid calls | cache hits (after waiting for a leader) | makespan s | cost $ |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, r in enumerate(figures["rounds"]):
        lines.append(f"| {n} | {r['mode']} | {r['finished']} | {r['paid_calls']} | {r['cache_hits']} "
                     f"({r['hits_after_waiting']}) | {r['makespan_s']:.1f} | {r['cost_usd']:.6f} |")
    lines += [
        "",
        f"Paid calls with the cache on equal the distinct prompts ({c['distinct']}) in every round: "
        f"**{'met' if exact else 'missed'}**. Median makespan: off {_median(off, 'makespan_s'):.1f} s, on "
        f"{_median(on, 'makespan_s'):.1f} s; cost: off ${_median(off, 'cost_usd'):.6f}, on "
        f"${_median(on, 'cost_usd'):.6f} per 1,000 jobs. A duplicate submitted beside its twin waits for the "
        "leader's call (single flight) instead of paying a second one; a later one is served from the stored answer.",
    ]
    costs = figures.get("instructions")
    if costs:
        lines += ["", "What budgets cost the limiter (redis-server instructions per call, callgrind; repeatable where "
                  "wall time on this box is not):", "", "| operation | instructions |", "|---|---:|"]
        lines += [f"| {name} | {value:,.0f} |" for name, value in costs.items()]
        lines += ["", "With no budget set acquire passes no budget key and reads nothing more (the budget functions "
                  "are not even created); with a model and a pool budget it reads and writes both records in the same "
                  "script call."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    workdir = Path(__file__).resolve().parent / "results"
    figures = bench(workdir)
    print(markdown(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
