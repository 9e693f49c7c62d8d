"""`make run`: the whole pipeline on embedded defaults, then a results table.

Starts a real redis-server, moto's S3 server and (unless GEMINI_API_KEY is set) the offline Gemini
simulator, starts workers, submits a sample batch of every job kind, shows progress, prints a table
and stops everything it started.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY, WorkerGroup, create_bucket, stack_env

# The demo's simulator: realistic latency, and a flaky primary text model so the table shows retries and
# fallbacks happening.
DEMO_SIM_CONFIG: dict[str, Any] = {
    "api_keys": [SIM_KEY],
    "defaults": {"latency_ms": 400, "jitter_ms": 150},
    "faults": [{"kind": "503", "model": "gemini-3.8-flash", "start_s": 0, "rate": 0.3}],
}
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "tags": {"type": "array",
          "items": {"type": "string"}}, "rating": {"type": "integer", "minimum": 1, "maximum": 5}},
          "required": ["title", "tags", "rating"]}


def sample_batch() -> list[dict[str, Any]]:
    texts = ["Write a haiku about a queue that never loses a job", "Explain token buckets to a five-year-old",
             "Three names for a lighthouse cafe", "Summarise why retries need jitter"]
    return [
        *({"kind": "text", "prompt": p} for p in texts),
        {"kind": "chat", "messages": [{"role": "user", "text": "Hi! Can you suggest a book?"},
                                      {"role": "model", "text": "Gladly: what genre?"},
                                      {"role": "user", "text": "Science fiction, please."}]},
        {"kind": "chat", "conversation_id": "demo-conversation", "message": "Remember: my favourite colour is teal."},
        {"kind": "json", "prompt": "Describe the film Metropolis", "json_schema": SCHEMA},
        {"kind": "json", "prompt": "Describe the novel Dune", "json_schema": SCHEMA},
        {"kind": "image", "prompt": "A lighthouse at dusk, watercolour", "aspect_ratio": "1:1"},
        {"kind": "image", "prompt": "Slow clouds over a mountain lake", "preset": "video_background"},
    ]


def results_table(records: list[Any]) -> Table:
    table = Table(title="genpool: sample batch")
    for column in ("job", "kind", "status", "model used", "fallbacks", "attempts", "seconds", "S3 key"):
        table.add_column(column)
    for r in records:
        key = r.storage.key if r.storage else (r.error.message[:60] if r.error else "-")
        table.add_row(r.id[:12], r.kind, r.status, r.model_used or "-", str(r.fallbacks_used), str(r.attempts),
                      f"{r.duration_s:.2f}", key)
    return table


def run(workdir: Path, console: Console) -> int:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    started: list[services.Service] = []
    workers: WorkerGroup | None = None
    try:
        console.print("[bold]starting[/] redis-server, S3 server (moto) ...")
        redis_svc = services.start_redis(workdir=workdir / "redis")
        s3_svc = services.start_s3(workdir=workdir / "s3")
        started += [redis_svc, s3_svc]
        api_key = os.environ.get("GEMINI_API_KEY", "")
        sim_url = None
        if not api_key:
            config = workdir / "sim.json"
            config.write_text(json.dumps(DEMO_SIM_CONFIG))
            sim = services.start_sim(config, workdir=workdir / "sim")
            started.append(sim)
            sim_url, api_key = sim.url, SIM_KEY
            console.print(f"GEMINI_API_KEY not set: using the offline Gemini simulator at {sim.url}")
        env = stack_env(redis_svc.url, s3_svc.url, sim_url, api_key, workdir, GENPOOL_HEARTBEAT_S="2")
        create_bucket(env)
        workers = WorkerGroup(env, workdir)
        workers.start(2, concurrency=16)
        pool = GenPool.from_env(Settings.from_env(env, dotenv_path=None))
        handles = pool.submit_many(sample_batch())
        console.print(f"submitted {len(handles)} jobs on 2 workers x 16 in flight")
        records = _wait(pool, handles, console)
        console.print(results_table([r for r in records if r is not None]))
        missing = sum(r is None for r in records)
        if missing:
            console.print(f"[red]{missing} jobs did not finish; worker logs in {workdir}[/]")
        return 0 if not missing and all(r.status == "finished" for r in records if r) else 1
    finally:
        if workers is not None:
            workers.stop()
        for svc in reversed(started):
            svc.stop()
        console.print("stopped everything this demo started")


def _wait(pool: Any, handles: list[Any], console: Console, timeout_s: float = 120.0) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    results: list[Any] = [None] * len(handles)
    deadline = time.monotonic() + timeout_s
    with Progress("jobs", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("jobs", total=len(handles))
        while time.monotonic() < deadline:
            done = pool.poll_results(handles, results)
            progress.update(task, completed=done)
            if done == len(handles):
                break
            time.sleep(0.2)
    return results


def main() -> int:
    console = Console() if sys.stdout.isatty() else Console(width=170)
    try:
        with tempfile.TemporaryDirectory(prefix="genpool-run-") as tmp:
            return run(Path(tmp), console)
    except services.ServiceError as exc:
        console.print(f"[red]genpool run: {exc}[/]")
        return 2


if __name__ == "__main__":
    sys.exit(main())
