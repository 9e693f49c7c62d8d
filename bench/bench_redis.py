"""Redis work per finished job: commands and Redis CPU, idle cost subtracted (issue #17).

    .venv/bin/python -m bench.bench_redis [--jobs 1000]

One worker process (PoolWorker, ``CONCURRENCY`` threads) against a simulator answering at once, on a
private redis-server. Redis's own counters are read around each phase — ``INFO commandstats`` (calls per
command) and ``used_cpu_sys + used_cpu_user`` — so everything every client makes is counted: the
producer's submit and its wait for the results, the worker's RQ lifecycle and genpool's own calls.

- idle: the worker running with nothing to do, for ``IDLE_S``; its rate (commands and CPU per second:
  heartbeats, the dequeue's polling, the scheduler duty) is subtracted from the phases below;
- the bare RQ no-op job on the same worker class (``bench.noop_worker``): RQ's own share;
- genpool text jobs: submitted with ``submit_many(notify=True)``, waited for with ``wait_all``.

The two phases alternate over ``ROUNDS`` rounds; the figures are the round with the median genpool CPU
per job (every round's figures are listed beside it).

The one-core ceiling is 1 s / (Redis CPU per job): the most jobs a second one Redis core can serve.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench import workerkit

TITLE = "Redis work per job: commands and Redis CPU (#17 targets: <= 40 commands, <= 0.4 ms)"
COMMANDS_TARGET, CPU_MS_TARGET = 40, 0.4
CONCURRENCY = 32
JOBS = 1000
ROUNDS = 5  # alternated no-op / genpool rounds: Redis's CPU per job moves ~15 % with the box's load
IDLE_S = 10.0
PROMPT = "Write a two-line poem about job number {i} of a worker pool."


def snapshot(conn: redis.Redis) -> tuple[Counter[str], Counter[str], float]:
    """Calls and microseconds per command, and Redis's CPU seconds (user + sys) so far."""
    stats = conn.info("commandstats")
    calls = Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})
    usec = Counter({name.removeprefix("cmdstat_"): int(row["usec"]) for name, row in stats.items()})
    cpu = conn.info("cpu")
    return calls, usec, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def measure(conn: redis.Redis, run: Callable[[], None]) -> dict[str, Any]:
    """What Redis did while ``run`` ran: calls and time per command, CPU seconds, wall seconds."""
    calls_before, usec_before, cpu_before = snapshot(conn)
    started = time.monotonic()
    run()
    elapsed_s = time.monotonic() - started
    calls_after, usec_after, cpu_after = snapshot(conn)
    calls, usec = calls_after - calls_before, usec_after - usec_before
    calls.pop("info", None)  # our own two INFO reads
    usec.pop("info", None)
    return {"calls": dict(calls), "usec": dict(usec), "cpu_s": cpu_after - cpu_before, "elapsed_s": elapsed_s}


def per_job(phase: dict[str, Any], idle: dict[str, Any], jobs: int) -> dict[str, Any]:
    """A phase's Redis work per job, the idle rate over its duration subtracted."""
    scale = phase["elapsed_s"] / idle["elapsed_s"]
    calls = {name: (count - idle["calls"].get(name, 0) * scale) / jobs for name, count in phase["calls"].items()}
    cpu_ms = (phase["cpu_s"] - idle["cpu_s"] * scale) * 1000 / jobs
    top = dict(sorted(((n, round(c, 2)) for n, c in calls.items() if c >= 0.05), key=lambda kv: -kv[1]))
    usec = {name: (us - idle.get("usec", {}).get(name, 0) * scale) / jobs for name, us in phase.get("usec", {}).items()}
    top_usec = dict(sorted(((n, round(u, 1)) for n, u in usec.items() if u >= 1), key=lambda kv: -kv[1])[:8])
    return {"commands": round(sum(calls.values()), 1), "cpu_ms": round(cpu_ms, 3),
            "ceiling_jobs_s": round(1000 / cpu_ms) if cpu_ms > 0 else None, "by_command": top,
            "usec_by_command": top_usec,
            "elapsed_s": round(phase["elapsed_s"], 2)}


def _genpool_jobs(pool: Any, count: int) -> Callable[[], None]:
    def run() -> None:
        handles = pool.submit_many([{"kind": "text", "prompt": PROMPT.format(i=i)} for i in range(count)],
                                   notify=True)
        records = pool.wait_all(handles, timeout_s=600)
        failed = [r for r in records if r is None or r.status != "finished"]
        if failed:
            raise RuntimeError(f"{len(failed)} of {count} jobs did not finish: {failed[:1]}")
    return run


def _noop_jobs(queue: Any, count: int) -> Callable[[], None]:
    def run() -> None:
        before = queue.finished_job_registry.count
        workerkit.enqueue_bare(queue, count)
        workerkit.wait_finished(queue, before, count)
    return run


def bench(workdir: Path, jobs: int = JOBS) -> dict[str, Any]:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    with workerkit.stack(workdir / "redis-run", {"latency_ms": 0, "jitter_ms": 0}, rpm=10**7) as st:
        conn = st.connection()
        workers = st.workers(module="bench.noop_worker")
        try:
            workers.start(1, concurrency=CONCURRENCY)
            workerkit.wait_for_workers(conn, 1, workers.procs)
            pool = GenPool(st.connection(), settings=Settings.from_env(environ=st.env, dotenv_path=None))
            _genpool_jobs(pool, 100)()  # warm up: connections, scripts, the limiter's record
            _noop_jobs(workerkit.default_queue(conn), 100)()
            idle = measure(conn, lambda: time.sleep(IDLE_S))
            rounds = []
            for _ in range(ROUNDS):
                noop = measure(conn, _noop_jobs(workerkit.default_queue(conn), jobs))
                genpool = measure(conn, _genpool_jobs(pool, jobs))
                rounds.append({"noop": per_job(noop, idle, jobs), "genpool": per_job(genpool, idle, jobs)})
        finally:
            workers.stop()
            conn.close()
    median = sorted(rounds, key=lambda r: r["genpool"]["cpu_ms"])[len(rounds) // 2]
    return {"jobs": jobs, "concurrency": CONCURRENCY, "idle_s": IDLE_S,
            "idle_per_s": {"commands": round(sum(idle["calls"].values()) / idle["elapsed_s"], 1),
                           "cpu_ms": round(idle["cpu_s"] * 1000 / idle["elapsed_s"], 2)},
            "noop": median["noop"], "genpool": median["genpool"],
            "rounds": [{"noop_cpu_ms": r["noop"]["cpu_ms"], "genpool_cpu_ms": r["genpool"]["cpu_ms"],
                        "genpool_commands": r["genpool"]["commands"]} for r in rounds]}


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(figures: dict[str, Any]) -> str:
    g, n = figures["genpool"], figures["noop"]
    lines = [
        f"{figures['jobs']} text jobs (submit_many with notify + wait_all) and {figures['jobs']} bare RQ no-op jobs on one worker "
        f"process ({figures['concurrency']} threads), a private redis-server, a simulator answering at once. Redis's "
        f"own counters (INFO commandstats, used_cpu) around each phase; the idle worker's rate "
        f"({figures['idle_per_s']['commands']} commands/s, {figures['idle_per_s']['cpu_ms']} ms CPU/s) subtracted. "
        f"{len(figures.get('rounds', [])) or 1} rounds, no-op and genpool alternated; the table is the round with the "
        "median genpool CPU per job.",
        "",
        "| per job | genpool text job | RQ no-op job | target (genpool) |",
        "|---|---:|---:|---|",
        f"| Redis commands | {g['commands']} | {n['commands']} | ≤ {COMMANDS_TARGET}: "
        f"{_verdict(g['commands'] <= COMMANDS_TARGET)} |",
        f"| Redis CPU | {g['cpu_ms']} ms | {n['cpu_ms']} ms | ≤ {CPU_MS_TARGET} ms: {_verdict(g['cpu_ms'] <= CPU_MS_TARGET)} |",
        f"| one Redis core's ceiling | {g['ceiling_jobs_s']} jobs/s | {n['ceiling_jobs_s']} jobs/s | |",
        "",
        "Every round (Redis CPU per job, no-op / genpool; genpool commands): " + "; ".join(
            f"{r['noop_cpu_ms']} / {r['genpool_cpu_ms']} ms, {r['genpool_commands']}" for r in figures.get("rounds", []))
        + ".",
        "",
        "Commands per genpool job, by command: " + ", ".join(f"{k} {v}" for k, v in g["by_command"].items()) + ".",
        "",
        "Per RQ no-op job: " + ", ".join(f"{k} {v}" for k, v in n["by_command"].items()) + ".",
        "",
        "Redis time per genpool job by command (commandstats usec, µs; a Lua script's own commands count in "
        "both its EVALSHA and themselves): " + ", ".join(f"{k} {v}" for k, v in g.get("usec_by_command", {}).items())
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from bench.run_all import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = bench(RESULTS, args.jobs)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
