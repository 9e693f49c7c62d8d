"""CPU per finished job vs its irreducible parts, measured in the same run (issue #8 target 2, #17).

    .venv/bin/python -m bench.bench_cpu

One worker process (PoolWorker, ``CONCURRENCY`` threads) against a simulator answering at once. On that
same process, rounds alternate a batch of bare RQ no-op jobs, a batch of jobs that make only the raw parts
(bench.workerkit.parts: the raw call and the raw put, composed in one RQ job) and a batch of genpool text
jobs; the CPU of the worker process (user + sys from /proc, every thread) is read around each batch, so
the simulator, moto and Redis are not counted. The raw parts also run alone in their own processes: one
google-genai call with a reused Client against the same simulator, one boto3 put_object on genpool's own
S3 client against the same moto server. Then the whole job path is profiled with pyinstrument.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import cpu_sections, profiling, workerkit

TITLE = "CPU per finished job (target 2: <= 1.25x its irreducible parts)"
TARGET = 1.25
CONCURRENCY = 32
JOBS = 800
ROUNDS = 7
PROMPT = "Write a two-line poem about job number {i} of a worker pool."


def _producer(st: workerkit.Stack) -> Any:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    return GenPool(st.connection(), settings=Settings.from_env(environ=st.env, dotenv_path=None))


def _genpool_batch(pool: Any, count: int) -> None:
    handles = pool.submit_many([{"kind": "text", "prompt": PROMPT.format(i=i)} for i in range(count)])
    records = pool.wait_all(handles, timeout_s=300)
    failed = [r for r in records if r is None or r.status != "finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} genpool jobs did not finish: {failed[:1]}")


def _bare_batch(queue: Any, count: int, func: str = workerkit.NOOP) -> None:
    before = queue.finished_job_registry.count
    workerkit.enqueue_bare(queue, count, func)
    workerkit.wait_finished(queue, before, count)


def _cpu_of(pid: int, batch: Any, *args: Any) -> float:
    before = workerkit.proc_cpu_s(pid)
    batch(*args)
    return workerkit.proc_cpu_s(pid) - before


RAW_PARTS = {"genai_seq_ms": ("genai", 1), "s3_seq_ms": ("s3", 1), "genai_same_seq_ms": ("genai-same", 1),
             "genai_threads_ms": ("genai", CONCURRENCY), "s3_threads_ms": ("s3", CONCURRENCY)}
SUMS = {"": "genai_seq_ms", "_same": "genai_same_seq_ms"}


def measure_raw(st: workerkit.Stack, part: str, count: int, threads: int) -> float:
    """CPU ms per call of one raw part, in a process of its own (sequential calls, or on ``threads``)."""
    import json
    import subprocess

    argv = [sys.executable, "-m", "bench.raw_calls", part, "--count", str(count), "--threads", str(threads)]
    out = subprocess.run(argv, env={**workerkit.os.environ, **st.env}, capture_output=True, text=True,
                         check=True, timeout=300, cwd=workerkit.ROOT)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_s_per_call"]) * 1000


def one_round(st: workerkit.Stack, pid: int, queue: Any, pool: Any, jobs: int) -> dict[str, float]:
    """Everything measured back to back, so a burst of load from elsewhere hits one round, not one side."""
    row = {"noop_ms": _cpu_of(pid, _bare_batch, queue, jobs) * 1000 / jobs,
           "composed_ms": _cpu_of(pid, _bare_batch, queue, jobs, workerkit.PARTS) * 1000 / jobs,
           "job_ms": _cpu_of(pid, _genpool_batch, pool, jobs) * 1000 / jobs}
    for name, (part, threads) in RAW_PARTS.items():
        row[name] = measure_raw(st, part, jobs, threads)
    for suffix, genai in SUMS.items():
        row[f"ratio{suffix}"] = row["job_ms"] / (row["noop_ms"] + row[genai] + row["s3_seq_ms"])
    row["ratio_threads"] = row["job_ms"] / (row["noop_ms"] + row["genai_threads_ms"] + row["s3_threads_ms"])
    row["ratio_composed"] = row["job_ms"] / row["composed_ms"]
    row["composed_over_sum"] = row["composed_ms"] / (row["noop_ms"] + row["genai_seq_ms"] + row["s3_seq_ms"])
    return row


def measure(st: workerkit.Stack, jobs: int, rounds: int) -> dict[str, Any]:
    """Rounds on one worker process; each figure is the median over rounds, each ratio the median of
    the rounds' own ratios."""
    group = st.workers(module="bench.noop_worker")
    group.start(1, CONCURRENCY)
    conn = st.connection()
    try:
        workerkit.wait_for_workers(conn, 1, group.procs)
        pid = group.procs[0].pid
        queue, pool = workerkit.default_queue(conn), _producer(st)
        _bare_batch(queue, 200)  # warm up every path
        _bare_batch(queue, 200, workerkit.PARTS)
        _genpool_batch(pool, 200)
        rows = [one_round(st, pid, queue, pool, jobs) for _ in range(rounds)]
        figures: dict[str, Any] = {name: statistics.median(r[name] for r in rows) for name in rows[0]}
        figures["rows"] = rows
        figures["worker_rss_mib"] = workerkit.proc_rss_bytes(pid) / 2**20
        return figures
    finally:
        group.stop()
        conn.close()


def bench(workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    with workerkit.stack(workdir / "bench_cpu", {"latency_ms": 0, "jitter_ms": 0}, rpm=10_000_000) as st:
        figures: dict[str, Any] = {"jobs": JOBS, "rounds": ROUNDS, "concurrency": CONCURRENCY}
        figures.update(measure(st, JOBS, ROUNDS))
        figures["sections"] = cpu_sections.measure(st, JOBS, PROMPT)
        figures["profile"] = profiling.profile_job_path(st, 1500, PROMPT)
    figures["parts_ms"] = figures["noop_ms"] + figures["genai_seq_ms"] + figures["s3_seq_ms"]
    figures["parts_same_ms"] = figures["noop_ms"] + figures["genai_same_seq_ms"] + figures["s3_seq_ms"]
    figures["parts_threads_ms"] = figures["noop_ms"] + figures["genai_threads_ms"] + figures["s3_threads_ms"]
    figures["bench_s"] = round(time.monotonic() - started, 1)
    return figures


def gap(f: dict[str, Any]) -> str:
    """What stands above the parts, from this run's sections table (bench/cpu_sections.py)."""
    sec, alone = f["sections"]["sections_ms"], f["sections"]["alone_ms"]
    call, put = "Gemini call (google-genai, plain client)", "S3 put (tags, metadata, upload retry)"
    own = sum(sec[k] for k in ("limiter acquire (EVALSHA)", cpu_sections.RECORD, "envelope parse (pydantic)"))
    in_place = f["sections"]["total_ms"]
    return (
        f"What stands above the sum of the parts measured alone: the worker's {f['concurrency']} job threads cost {f['job_ms'] - in_place:.2f} ms "
        f"a job more than the same jobs run in place on one thread ({in_place:.2f} ms, the sections table): a job "
        "blocks ~4 times (the Gemini call, the S3 put, its end with its record, and its share of the dequeue and "
        "of the start MULTI it shares with the jobs taken with it, which carries its first acquire) and takes the "
        "GIL back from 31 other threads each time (the no-op job: its end, and its share of a dequeue and a "
        "start). In the sections table, the parts themselves cost more inside a job than "
        f"alone in a loop (the Gemini call {sec[call]:.2f} ms in the job vs {alone[call]:.2f} ms alone, the S3 put "
        f"{sec[put]:.2f} vs {alone[put]:.2f} ms with the same client): between two calls a job runs RQ's, boto3's "
        "and redis-py's code, so caches and branch predictors start cold, and the raw parts are measured in a "
        "loop (the same plain-client call, same process, measured while writing #17 on the loaded box: 1.49 ms "
        "median after another call, 1.79 ms after an S3 put and five Redis GETs). The S3 put also carries the "
        "object's metadata (what a re-run rebuilds a paid answer's record from, worker/runner.py `_recover`; one "
        "packed header) and 2 tags, which the raw put (same client) does not. "
        f"genpool's own work outside RQ's start and end is {own:.2f} ms a job: the envelope's validation (Redis is "
        "a trust boundary) and the limiter's acquire where it makes its own (the first one rides the job's start "
        "MULTI); the record (with the announcement for a "
        "waiting producer) is written in RQ's end MULTI, whose row includes it; each round trip is ~0.1 ms of "
        "redis-py.\n\n"
        "Removed in #17: the per-job metrics pipeline (summed per process, written every second), the result "
        "GET and route pin of a first run, settle when there is nothing to correct, RQ's heartbeats and "
        "suspension check per job, three of RQ's seven round trips a job (the fetch after the dequeue, WATCH "
        "and SMEMBERS before the end), RQ's full job save and result stream for genpool's jobs, the SDK's "
        "per-call config for a default job (a plain client per catalog timeout: ~0.9 ms a call), the record's "
        "own round trip (it rides RQ's end MULTI) and, in the S3 client, botocore's parameter validation and "
        "the CRC32 it adds to every put (the raw put above is configured the same way, so the baseline is the "
        "cheapest put boto3 makes), the 100-continue handshake of a small body, botocore's User-Agent rebuilt "
        "twice a put (one set in the client's Config), six of the seven metadata headers (packed into one), a "
        "tenacity Retrying built for a first attempt that succeeds (the model call's and the upload's), and full "
        "collections scanning the startup heap (frozen before the first job), the first acquire's round trip "
        "(it rides the start MULTI, which the jobs of one dequeue share). Not removed: the S3 metadata (the "
        "re-run guard reads it; README documents it), the envelope's validation."
    )


def _rounds(f: dict[str, Any]) -> str:
    return ", ".join(f"{r['noop_ms']:.2f}/{r['composed_ms']:.2f}/{r['job_ms']:.2f} ms, "
                     f"{r['ratio_composed']:.2f}x/{r['ratio']:.2f}x" for r in f["rows"])


def markdown(figures: dict[str, Any]) -> str:
    f = figures
    met = f["ratio_composed"] <= TARGET
    lines = [
        f"One worker process (PoolWorker, {f['concurrency']} job threads), simulator at 0 ms latency; worker CPU "
        f"(user+sys from /proc) over {f['jobs']} jobs per batch, {f['rounds']} rounds, the three kinds of job "
        "alternated. Raw parts alone: each in a process of its own, same simulator and S3 server, reused clients. "
        "The parts composed: one RQ job (bench.workerkit.parts) that makes the same raw call (a default google-genai "
        "Client) and the same raw put (genpool's own S3 client), on the same worker process and threads as genpool's "
        "jobs.",
        "",
        "| per finished job | CPU ms | against the sum of the parts |",
        "|---|---:|---:|",
        f"| bare RQ no-op job, same worker class and concurrency | {f['noop_ms']:.2f} | "
        f"{f['noop_ms'] / f['parts_ms']:.0%} |",
        f"| raw google-genai generate_content, reused Client (sequential, alone) | {f['genai_seq_ms']:.2f} | "
        f"{f['genai_seq_ms'] / f['parts_ms']:.0%} |",
        f"| raw boto3 put_object on genpool's own S3 client (sequential, alone) | {f['s3_seq_ms']:.2f} | "
        f"{f['s3_seq_ms'] / f['parts_ms']:.0%} |",
        f"| **sum of the parts, each measured alone** | **{f['parts_ms']:.2f}** | 100% |",
        f"| **the parts composed**: one RQ job making that call and that put | **{f['composed_ms']:.2f}** | "
        f"{f['composed_over_sum']:.2f}x |",
        f"| **genpool text job** (envelope check, limiter, call, S3 put with tags and metadata, record, metrics) | "
        f"**{f['job_ms']:.2f}** | {f['ratio']:.2f}x |",
        "",
        f"Target <= {TARGET:.2f}x the parts: **{'met' if met else 'not met'}**: a genpool job costs "
        f"**{f['ratio_composed']:.2f}x** the parts composed in one job. Against the sum of the parts each measured "
        f"alone in a tight loop it costs {f['ratio']:.2f}x; the composed parts alone cost {f['composed_over_sum']:.2f}x "
        "that sum: a call and a put made by one job, between RQ's bookkeeping, cost more than each made back to "
        "back in a loop of its own (cold caches; no implementation avoids it), so the sum understates what the parts "
        "cost in any worker, and the composed job is the baseline the target is judged on. "
        f"With the raw parts alone on {f['concurrency']} threads (as the worker runs them): sum "
        f"{f['parts_threads_ms']:.2f} ms, ratio {f['ratio_threads']:.2f}x. With the raw call sending a config as "
        f"genpool does for a job with options (safety settings and a per-call timeout: the SDK converts it, "
        f"{f['genai_same_seq_ms']:.2f} ms; a default job sends none, worker/gemini.py's plain client): sum "
        f"{f['parts_same_ms']:.2f} ms, ratio {f['ratio_same']:.2f}x.",
        f"Rounds (no-op / composed parts / genpool job, ms; genpool against the composed parts / against the "
        f"sum): {_rounds(f)}. Figures are medians over rounds; ratios are the median of each round's own ratio "
        "(its parts measured right after its jobs).",
        "",
        cpu_sections.markdown(f["sections"]),
        "",
        profiling.markdown(f["profile"]),
        "",
        gap(f),
    ]
    return "\n".join(lines)


def main() -> int:
    from bench.run_all import RESULTS

    figures = bench(RESULTS)
    print(markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
