"""Where a genpool job's CPU goes, section by section, beside the same calls made alone (bench_cpu's gap).

The jobs run in place on one thread (bench.profiling.InPlaceWorker), each section's thread CPU time summed
around its function; then, in the same process, the raw google-genai call and the raw boto3 put run in a
tight loop. A part costs more inside a job than alone: between two Gemini calls the job runs RQ's code,
S3's and Redis's, so caches and branch predictors start cold (the parts are measured alone).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench import profiling, workerkit

RECORD = "result record (+ announce), queued for RQ's end"
#: (label, module, class, method): the sections timed inside the job, in the job's order.
SECTIONS = (
    ("RQ: dequeue script + job restore", "genpool.worker.rqcompat.worker", "ThreadedWorker", "_pop"),
    ("RQ: start (one MULTI)", "genpool.worker.rqcompat.lean", "LeanWorker", "start_execution"),
    ("envelope parse (pydantic)", "genpool.worker.tasks", None, "_parse"),
    ("limiter acquire (EVALSHA)", "genpool.shared.ratelimit.store", "RedisLimiter", "acquire"),
    ("Gemini call (google-genai, plain client)", "genpool.worker.gemini", "GeminiGateway", "generate"),
    ("S3 put (tags, metadata, upload retry)", "genpool.worker.results", "ResultStore", "store_output"),
    # A finished job's record and announcement are queued here and written in RQ's end MULTI (GuardedJob.at_end).
    (RECORD, "genpool.worker.results", "ResultStore", "save"),
    ("RQ: end (one MULTI, with the record)", "genpool.worker.rqcompat.lean", "LeanWorker", "handle_job_success"),
)
ALONE = 300


@contextmanager
def _timed(spent: Counter[str]) -> Iterator[None]:
    """Wrap each section's function with a thread-CPU timer; restore them on exit."""
    import importlib

    saved = []
    for label, module_name, class_name, name in SECTIONS:
        owner = importlib.import_module(module_name)
        if class_name:
            owner = getattr(owner, class_name)
        original = getattr(owner, name)
        saved.append((owner, name, original))
        setattr(owner, name, _timer(spent, label, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _timer(spent: Counter[str], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - started
    return timed


def _alone_ms(op: Callable[[int], object]) -> float:
    for i in range(20):
        op(i)
    started = time.thread_time()
    for i in range(ALONE):
        op(i)
    return (time.thread_time() - started) * 1000 / ALONE


def measure(st: workerkit.Stack, jobs: int, prompt: str) -> dict[str, Any]:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings
    from genpool.worker.main import prepare
    from genpool.worker.pool import queues_for
    from genpool.worker.runtime import set_runtime

    settings = Settings.from_env(environ=st.env, dotenv_path=None)
    with profiling._aws_env(st.env):  # noqa: SLF001 - the profile's own helper
        runtime = prepare(settings)
    pool = GenPool(st.connection(), settings=settings)
    worker = profiling.InPlaceWorker.make(queues_for(runtime.redis), runtime.redis, settings.heartbeat_s)
    spent: Counter[str] = Counter()
    try:
        pool.submit_many([{"kind": "text", "prompt": prompt.format(i=i)} for i in range(50)])
        worker.work(burst=True, logging_level="WARNING")  # warm up
        pool.submit_many([{"kind": "text", "prompt": prompt.format(i=i)} for i in range(jobs)])
        started = time.thread_time()
        with _timed(spent):
            worker.work(burst=True, logging_level="WARNING")
        total_ms = (time.thread_time() - started) * 1000 / jobs
        client, s3 = runtime.gateway.client, runtime.store._client  # noqa: SLF001 - the raw calls, same clients
        alone = {
            "Gemini call (google-genai, plain client)": _alone_ms(lambda i: client.models.generate_content(
                model=workerkit.MODEL, contents=prompt.format(i=i))),
            "S3 put (tags, metadata, upload retry)": _alone_ms(lambda i: s3.put_object(
                Bucket=settings.s3_bucket, Key=f"alone/{uuid.uuid4().hex}.txt", Body=b"x" * 400,
                ContentType="text/plain; charset=utf-8")),
        }
    finally:
        set_runtime(None)
        pool.connection.close()
    sections = {label: spent[label] * 1000 / jobs for label, *_ in SECTIONS}
    return {"jobs": jobs, "total_ms": total_ms, "sections_ms": sections, "alone_ms": alone,
            "rest_ms": total_ms - sum(sections.values())}


def markdown(figures: dict[str, Any]) -> str:
    f = figures
    lines = [f"Where a job's CPU goes ({f['jobs']} jobs in place on one thread, {f['total_ms']:.2f} ms each; "
             "thread CPU summed per section), beside the raw call alone in a tight loop in the same process:", "",
             "| section of the job | ms/job | the raw call alone, ms |", "|---|---:|---:|"]
    for label, ms in f["sections_ms"].items():
        alone = f["alone_ms"].get(label)
        lines.append(f"| {label} | {ms:.3f} | {f'{alone:.3f}' if alone is not None else ''} |")
    lines.append(f"| the rest (RQ's loop and job wrapper, the runner, trace, metrics) | {f['rest_ms']:.3f} | |")
    return "\n".join(lines)
