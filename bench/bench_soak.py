"""Soak: worker RSS over 20 minutes at load, glibc's default malloc arenas against genpool's cap (#14).

    .venv/bin/python -m bench.bench_soak            (or `make soak`; not part of `make bench`: it runs ~22 min)

Two PoolWorker processes share one queue that a producer keeps full, against the simulator at 1 s latency
and no quota: one with glibc's default arenas (``GENPOOL_MALLOC_ARENA_MAX=0``: up to 8 per core), one
with genpool's default cap (2). The same load, the same code; only the allocator setting differs. RSS is
read from /proc every 10 s; the figures are RSS at the start of the load and after 5, 10 and 20 minutes,
and the growth per minute over the last 10 minutes (levelled off if close to 0).
``GENPOOL_SOAK_S`` shortens the run (a smoke test), never below one sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import workerkit

TITLE = "Soak: worker RSS over 20 minutes at load (arena cap vs glibc's default)"
SOAK_S = int(os.environ.get("GENPOOL_SOAK_S", str(20 * 60 + 30)))
SAMPLE_S = 10
CONCURRENCY = 64  # genpool's default GENPOOL_CONCURRENCY
LATENCY_MS = 1000
JITTER_MS = 200
BACKLOG = 4 * CONCURRENCY
VARIANTS = {"glibc default arenas": "0", "arena cap 2 (default)": "2"}
MARKS_MIN = (0, 5, 10, 15, 20)


def _start(st: workerkit.Stack, name: str, arenas: str) -> subprocess.Popen[bytes]:
    log = open(st.workdir / f"worker-{arenas}.log", "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, **st.env, "GENPOOL_MALLOC_ARENA_MAX": arenas}
    return subprocess.Popen([sys.executable, "-m", "genpool.worker.main", "--concurrency", str(CONCURRENCY)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=st.workdir, start_new_session=True)


def _sample(procs: dict[str, subprocess.Popen[bytes]], conn: Any, stop: threading.Event,
            rows: list[dict[str, Any]]) -> None:
    queue = workerkit.default_queue(conn)
    started = time.monotonic()
    while not stop.wait(max(0.0, SAMPLE_S - (time.monotonic() - started) % SAMPLE_S)):
        row: dict[str, Any] = {"t_s": round(time.monotonic() - started), "finished": queue.finished_job_registry.count}
        for name, proc in procs.items():
            row[name] = workerkit.proc_rss_bytes(proc.pid) if proc.poll() is None else 0
        rows.append(row)


def run(st: workerkit.Stack) -> dict[str, Any]:
    procs = {name: _start(st, name, arenas) for name, arenas in VARIANTS.items()}
    conn = st.connection()
    feeder = None
    rows: list[dict[str, Any]] = []
    stop = threading.Event()
    try:
        workerkit.wait_for_workers(conn, len(procs), list(procs.values()))
        idle = {name: workerkit.proc_rss_bytes(p.pid) for name, p in procs.items()}
        feeder = subprocess.Popen([sys.executable, "-m", "bench.feeder", "--backlog", str(BACKLOG), "--batch",
                                   str(CONCURRENCY)], env={**os.environ, **st.env}, cwd=workerkit.ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler = threading.Thread(target=_sample, args=(procs, conn, stop, rows), daemon=True)
        sampler.start()
        time.sleep(SOAK_S)
        stop.set()
        sampler.join(timeout=15)
        alive = {name: p.poll() is None for name, p in procs.items()}
    finally:
        if feeder is not None:
            feeder.terminate()
            feeder.wait(timeout=10)
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        conn.close()
    return {"rows": rows, "idle_rss": idle, "alive_at_end": alive}


def _at(rows: list[dict[str, Any]], name: str, minute: float) -> float:
    """RSS MiB of the sample nearest ``minute`` into the load (the first sample for 0)."""
    target = minute * 60
    row = min(rows, key=lambda r: abs(r["t_s"] - target))
    return float(row[name]) / 2**20


def _growth(rows: list[dict[str, Any]], name: str, last_s: float) -> float:
    """MiB per minute over the last ``last_s`` seconds of the run."""
    end = rows[-1]
    start = min((r for r in rows if r["t_s"] >= end["t_s"] - last_s), key=lambda r: r["t_s"])
    span_min = max(1e-9, (end["t_s"] - start["t_s"]) / 60)
    return float(end[name] - start[name]) / 2**20 / span_min


def plot(figures: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.run_all import PLOTS

    rows = figures["rows"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in VARIANTS:
        ax.plot([r["t_s"] / 60 for r in rows], [r[name] / 2**20 for r in rows], label=name)
    ax.set_xlabel("minutes at load")
    ax.set_ylabel("worker RSS MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax.set_title(f"1 PoolWorker x {CONCURRENCY} threads each, {LATENCY_MS / 1000:g} s simulated latency")
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / "bench_soak.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def bench(workdir: Path) -> dict[str, Any]:
    sim = {"latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS}
    with workerkit.stack(workdir / "bench_soak", sim, rpm=10_000_000, GENPOOL_HEARTBEAT_S="5") as st:
        figures = run(st)
    rows = figures["rows"]
    figures["rss_mib"] = {name: {str(m): round(_at(rows, name, m), 1) for m in MARKS_MIN if m * 60 <= rows[-1]["t_s"] + 30}
                          for name in VARIANTS}
    figures["growth_mib_per_min_last_10"] = {name: round(_growth(rows, name, 600), 2) for name in VARIANTS}
    figures["jobs"] = rows[-1]["finished"]
    figures["minutes"] = round(rows[-1]["t_s"] / 60, 1)
    figures["config"] = {"concurrency": CONCURRENCY, "latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS,
                         "soak_s": SOAK_S, "variants": VARIANTS}
    figures["plot"] = str(plot(figures))
    return figures


def markdown(figures: dict[str, Any]) -> str:
    marks = [m for m in MARKS_MIN if str(m) in next(iter(figures["rss_mib"].values()))]
    lines = [
        f"Two worker processes ({CONCURRENCY} job threads each) share one queue kept full by a producer, against "
        f"the simulator at {LATENCY_MS / 1000:g} s ± {JITTER_MS} ms; {figures['jobs']:,} jobs in "
        f"{figures['minutes']:g} minutes. Only `GENPOOL_MALLOC_ARENA_MAX` differs between them.",
        "",
        "| worker | idle RSS MiB | " + " | ".join(f"{m} min" for m in marks) + " | growth, last 10 min |",
        "|---|---:|" + "---:|" * len(marks) + "---:|",
    ]
    for name in VARIANTS:
        rss = figures["rss_mib"][name]
        lines.append(f"| {name} | {figures['idle_rss'][name] / 2**20:.0f} | "
                     + " | ".join(f"{rss[str(m)]:.0f}" for m in marks)
                     + f" | {figures['growth_mib_per_min_last_10'][name]:+.1f} MiB/min |")
    lines += ["", "![soak](bench/plots/bench_soak.png)"]
    return "\n".join(lines)


def main() -> int:
    import json

    from bench.run_all import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = bench(RESULTS)
    (RESULTS / "bench_soak.json").write_text(json.dumps(figures, indent=2, default=str))
    print(markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
