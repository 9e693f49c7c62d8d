"""Profile the whole per-job path of the worker with pyinstrument and summarise where the CPU goes.

pyinstrument samples one thread, so the profiled worker runs each job on its main thread (a PoolWorker
whose ``execute_job`` performs the job in place): dequeue, RQ bookkeeping, the runner, the Gemini
call, the S3 put and the result record, exactly the code the job threads run.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import workerkit

OWN = ("worker", "shared", "producer")


class InPlaceWorker:
    """Factory for a PoolWorker subclass that runs each job on the calling thread (for profiling only)."""

    @staticmethod
    def make(queues: list[Any], connection: Any, heartbeat_s: float) -> Any:
        from genpool.worker.pool import PoolWorker

        class _InPlace(PoolWorker):
            def execute_job(self, job: Any, queue: Any) -> None:
                execution = self.start_execution(job)  # as the threaded worker starts a job
                with self._inflight_lock:
                    self._inflight[job.id] = (job, execution)
                self._perform(job, queue, execution)

        return _InPlace(queues, connection=connection, concurrency=1, heartbeat_s=heartbeat_s)


def profile_job_path(st: workerkit.Stack, jobs: int, prompt: str) -> dict[str, Any]:
    from pyinstrument import Profiler

    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings
    from genpool.worker.main import prepare
    from genpool.worker.pool import queues_for
    from genpool.worker.runtime import set_runtime

    settings = Settings.from_env(environ=st.env, dotenv_path=None)
    with _aws_env(st.env):  # boto3 reads its credentials from the process environment
        runtime = prepare(settings)
    pool = GenPool(st.connection(), settings=settings)
    worker = InPlaceWorker.make(queues_for(runtime.redis), runtime.redis, settings.heartbeat_s)
    try:
        pool.submit_many([{"kind": "text", "prompt": prompt.format(i=i)} for i in range(50)])
        worker.work(burst=True, logging_level="WARNING")  # warm up outside the profile
        pool.submit_many([{"kind": "text", "prompt": prompt.format(i=i)} for i in range(jobs)])
        profiler = Profiler(interval=0.0005)
        profiler.start()
        worker.work(burst=True, logging_level="WARNING")
        profiler.stop()
    finally:
        set_runtime(None)
        pool.connection.close()
    return summarise(profiler.last_session.root_frame(), jobs)


@contextmanager
def _aws_env(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env if k.startswith("AWS_")}
    os.environ.update({k: env[k] for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _frames(frame: Any) -> Iterator[Any]:
    stack = [frame]
    while stack:
        node = stack.pop()
        if not node.is_synthetic:
            yield node
        stack.extend(node.children)


def area(file_path: str | None) -> str:
    """Who owns the code: genpool's own modules, a third-party package, or the standard library."""
    if not file_path or file_path.startswith("<"):
        return "builtins"
    path = Path(file_path)
    if "site-packages" in path.parts:
        rest = path.parts[path.parts.index("site-packages") + 1:]
        return rest[0].removesuffix(".py") if rest else "site-packages"
    try:
        rel = path.relative_to(workerkit.ROOT)
    except ValueError:
        return "stdlib"
    return f"genpool {rel.parts[0]}/" if rel.parts[0] in OWN else f"repo {rel.parts[0]}/"


def _label(frame: Any) -> str:
    path = Path(frame.file_path or "?")
    return f"{frame.function} ({path.parent.name}/{path.name}:{frame.line_no})"


def _own_inclusive(root: Any) -> dict[str, float]:
    """Inclusive time of genpool's own functions, counted once per outermost call."""
    totals: dict[str, float] = defaultdict(float)
    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        node, open_labels = stack.pop()
        label = None
        if not node.is_synthetic and area(node.file_path).startswith("genpool"):
            label = _label(node)
            if label not in open_labels:
                totals[label] += node.time
        inner = open_labels | {label} if label else open_labels
        stack.extend((child, inner) for child in node.children)
    return totals


def summarise(root: Any, jobs: int) -> dict[str, Any]:
    by_area: dict[str, float] = defaultdict(float)
    by_function: dict[str, float] = defaultdict(float)
    for frame in _frames(root):
        by_area[area(frame.file_path)] += frame.total_self_time
        by_function[f"{_label(frame)} [{area(frame.file_path)}]"] += frame.total_self_time
    per_job_ms = 1000 / jobs

    def top(table: dict[str, float], count: int) -> list[tuple[str, float]]:
        return [(k, round(v * per_job_ms, 3)) for k, v in sorted(table.items(), key=lambda kv: -kv[1])[:count]]

    own = _own_inclusive(root)
    return {"jobs": jobs, "total_ms_per_job": round(root.time * per_job_ms, 3),
            "by_area": top(by_area, 14), "self_top": top(by_function, 15), "own_inclusive_top": top(own, 12)}


def markdown(profile: dict[str, Any]) -> str:
    p = profile
    lines = [f"pyinstrument over {p['jobs']} jobs run in place on one thread: {p['total_ms_per_job']:.2f} ms "
             "wall per job (sampled; includes waiting on the servers).", "",
             "| where (self time) | ms/job |", "|---|---:|"]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in p["by_area"]]
    lines += ["", "| top functions by self time | ms/job |", "|---|---:|"]
    lines += [f"| `{name}` | {ms:.3f} |" for name, ms in p["self_top"]]
    lines += ["", "| genpool's own functions, inclusive | ms/job |", "|---|---:|"]
    lines += [f"| `{name}` | {ms:.3f} |" for name, ms in p["own_inclusive_top"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit("run through bench.bench_cpu")
