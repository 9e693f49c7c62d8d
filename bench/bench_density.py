"""Density: sustained requests/min at 4 s simulated model latency, and the memory and CPU it takes
(issues #8 and #17).

    .venv/bin/python -m bench.bench_density

Each row: ``processes`` worker processes x ``concurrency`` job threads (PoolWorker) against the simulator
at 4 s latency with no quota, a catalog whose limits never bind, a producer process keeping a backlog
queued. Every second: the simulator's answered calls, RQ's started and queued jobs, the RSS and CPU of
every process (from /proc) and the whole machine's busy CPU (/proc/stat: other work on the box included).
Requests/min is the simulator's count of answered calls over a steady window after the ramp; the CPU
table is each process's CPU over that window, in cores, which shows what bounds a row that falls short.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import workerkit

TITLE = "Density: requests/min at 4 s model latency, RSS and CPU (targets 3 and #17)"
#: (processes, concurrency, calls/min target): 200 slots must keep their #8 figure, 400 aim at #17's.
ROWS = ((2, 100, 2900), (2, 200, 5000))
LATENCY_MS = 4000
JITTER_MS = 200
WARMUP_S = 20
WINDOW_S = 90
TARGET_RSS_GIB = 1.0
CORES = os.cpu_count() or 1
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
GROUPS = ("workers", "producer", "simulator", "redis", "s3 (moto)")


@dataclass
class Samples:
    """One row per second: time since start, finished jobs, RSS per process group, CPU seconds per process
    (by name) and of the whole machine, worker threads, started and queued jobs."""

    t_s: list[float] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    rss: dict[str, list[int]] = field(default_factory=dict)
    cpu_s: dict[str, list[float]] = field(default_factory=dict)
    machine_busy_s: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)

    def add(self, t_s: float, finished: int, started: int, queued: int, threads: int) -> None:
        self.t_s.append(round(t_s, 2))
        self.finished.append(finished)
        self.threads.append(threads)
        self.started.append(started)
        self.queued.append(queued)

    def add_series(self, table: dict[str, list[Any]], values: dict[str, Any]) -> None:
        for name, value in values.items():
            table.setdefault(name, []).append(value)


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (every core, every process: /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) * _TICK_S


def _by_group(pids: dict[str, list[int]], read: Any) -> dict[str, Any]:
    out = {}
    for name, group in pids.items():
        total = 0
        for pid in group:
            with contextlib.suppress(OSError):  # a process that just exited
                total += read(pid)
        out[name] = total
    return out


def _per_process(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds of each worker process and of every group."""
    cpu = _by_group(pids, workerkit.proc_cpu_s)
    for i, pid in enumerate(pids["workers"]):
        with contextlib.suppress(OSError):
            cpu[f"worker {i + 1}"] = workerkit.proc_cpu_s(pid)
    return cpu


def _sample(st: workerkit.Stack, pids: dict[str, list[int]], stop: threading.Event, samples: Samples) -> None:
    conn = st.connection()
    queue = workerkit.default_queue(conn)
    started = time.monotonic()
    try:
        while not stop.wait(max(0.0, 1.0 - (time.monotonic() - started) % 1.0)):
            threads = sum(workerkit.proc_threads(p) for p in pids["workers"])
            samples.add(time.monotonic() - started, queue.finished_job_registry.count,
                        conn.zcard(queue.started_job_registry.key), queue.count, threads)
            samples.add_series(samples.rss, _by_group(pids, workerkit.proc_rss_bytes))
            samples.add_series(samples.cpu_s, _per_process(pids))
            samples.machine_busy_s.append(machine_busy_s())
    finally:
        conn.close()


def _start_feeder(st: workerkit.Stack, slots: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "bench.feeder", "--backlog", str(2 * slots), "--batch", str(slots)]
    log = open(st.workdir / "feeder.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(argv, env={**workerkit.os.environ, **st.env}, stdout=log, stderr=subprocess.STDOUT,
                            cwd=workerkit.ROOT)


def _calls_per_second(st: workerkit.Stack) -> dict[int, int]:
    from genpool.devstack.stack import SimAdmin

    stats = SimAdmin(st.sim.url).stats()
    per_s: dict[int, int] = {}
    for model in stats["models"].values():
        for second, count in model.get("ok_per_s", {}).items():
            per_s[int(second)] = per_s.get(int(second), 0) + int(count)
    return per_s


def run(st: workerkit.Stack, processes: int, concurrency: int) -> dict[str, Any]:
    group = st.workers()
    group.start(processes, concurrency)
    conn = st.connection()
    samples, stop = Samples(), threading.Event()
    feeder = None
    try:
        workerkit.wait_for_workers(conn, processes, group.procs)
        idle_rss = [workerkit.proc_rss_bytes(p.pid) for p in group.procs]
        feeder = _start_feeder(st, processes * concurrency)
        pids = {"workers": [p.pid for p in group.procs], "producer": [feeder.pid], "simulator": [st.sim.proc.pid],
                "redis": [st.redis.proc.pid], "s3 (moto)": [st.s3.proc.pid]}
        wall_start = time.time()
        sampler = threading.Thread(target=_sample, args=(st, pids, stop, samples), daemon=True)
        sampler.start()
        time.sleep(WARMUP_S + WINDOW_S)
        stop.set()
        sampler.join(timeout=5)
    finally:
        if feeder is not None:
            feeder.terminate()
            feeder.wait(timeout=10)
        group.stop(timeout_s=30)
        conn.close()
    return {"samples": samples.__dict__, "idle_worker_rss": idle_rss, "wall_start": wall_start,
            "calls_per_s": _calls_per_second(st)}


def _window_rpm(calls_per_s: dict[int, int], wall_start: float) -> dict[str, Any]:
    first = int(wall_start) + WARMUP_S
    counts = [calls_per_s.get(s, 0) for s in range(first, first + WINDOW_S)]
    tens = [sum(counts[i:i + 10]) * 6 for i in range(0, len(counts) - 9, 10)]
    return {"window_calls": sum(counts), "rpm": sum(counts) * 60 / WINDOW_S, "rpm_min_10s": min(tens),
            "rpm_max_10s": max(tens)}


def _rss_figures(rss: dict[str, list[int]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, series in rss.items():
        out[name] = {"peak_mib": max(series) / 2**20, "avg_mib": sum(series) / len(series) / 2**20}
    genpool = [w + p for w, p in zip(rss["workers"], rss["producer"], strict=True)]
    out["genpool"] = {"peak_mib": max(genpool) / 2**20, "avg_mib": sum(genpool) / len(genpool) / 2**20}
    return out


def _window_cores(samples: dict[str, Any]) -> dict[str, float]:
    """Cores each process (group) used over the steady window, and the whole machine's busy cores."""
    last = min(WARMUP_S + WINDOW_S, len(samples["t_s"])) - 1
    first = min(WARMUP_S, last)
    span_s = max(1e-9, samples["t_s"][last] - samples["t_s"][first])
    cores = {name: (series[last] - series[first]) / span_s for name, series in samples["cpu_s"].items()}
    busy = samples["machine_busy_s"]
    cores["machine"] = (busy[last] - busy[first]) / span_s
    return cores


def _growth(series: list[int]) -> float:
    """MiB per minute from the first to the last one-second sample."""
    return (series[-1] - series[0]) / 2**20 * 60 / max(1, len(series) - 1)


def measure_row(workdir: Path, processes: int, concurrency: int, target_rpm: int) -> dict[str, Any]:
    sim = {"latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS}
    name = f"bench_density_{processes}x{concurrency}"
    with workerkit.stack(workdir / name, sim, rpm=10_000_000, GENPOOL_HEARTBEAT_S="5") as st:
        figures = run(st, processes, concurrency)
    samples = figures["samples"]
    figures.update(_window_rpm(figures["calls_per_s"], figures["wall_start"]))
    figures["rss_mib"] = _rss_figures(samples["rss"])
    figures["cores"] = _window_cores(samples)
    window = slice(WARMUP_S, WARMUP_S + WINDOW_S)
    started, queued = samples["started"][window], samples["queued"][window]
    figures["inflight_avg"] = sum(started) / max(1, len(started))
    figures["queued_min"] = min(queued, default=0)
    workers = samples["rss"]["workers"][window]
    half = len(workers) // 2
    figures["worker_rss_growth_mib_per_min"] = [_growth(workers[:half + 1]), _growth(workers[half:])]
    slots = processes * concurrency
    figures["config"] = {"processes": processes, "concurrency": concurrency, "slots": slots,
                         "target_rpm": target_rpm, "ceiling_rpm": slots * 60_000 / LATENCY_MS}
    figures["calls_per_s"] = {str(k): v for k, v in figures["calls_per_s"].items()}
    return figures


def plot(rows: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.run_all import PLOTS

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    xs = list(range(0, WARMUP_S + WINDOW_S - 9))
    for row in rows:
        c = row["config"]
        label = f"{c['processes']} x {c['concurrency']}"
        per_s = {int(k): v for k, v in row["calls_per_s"].items()}
        start = int(row["wall_start"])
        line, = top.plot(xs, [sum(per_s.get(start + x + i, 0) for i in range(10)) * 6 for x in xs],
                         label=f"{label}: answered calls/min (10 s rolling)")
        top.axhline(c["target_rpm"], color=line.get_color(), linestyle="--", label=f"{label} target")
        samples = row["samples"]
        genpool = [(w + p) / 2**20 for w, p in zip(samples["rss"]["workers"], samples["rss"]["producer"], strict=True)]
        bottom.plot(samples["t_s"], genpool, label=f"{label}: genpool RSS (workers + producer)")
    top.axvspan(WARMUP_S, WARMUP_S + WINDOW_S, color="green", alpha=0.08, label="steady window")
    top.set_ylabel("requests/min")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right", fontsize="small")
    bottom.axhline(TARGET_RSS_GIB * 1024, color="red", linestyle="--", label=f"{TARGET_RSS_GIB:g} GiB")
    bottom.set_ylabel("RSS MiB")
    bottom.set_xlabel("seconds since the producer started")
    bottom.legend(loc="upper left", fontsize="small")
    fig.suptitle(f"PoolWorker at {LATENCY_MS / 1000:g} s latency")
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / "bench_density.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def bench(workdir: Path) -> dict[str, Any]:
    rows = [measure_row(workdir, processes, concurrency, target) for processes, concurrency, target in ROWS]
    return {"rows": rows, "plot": str(plot(rows)), "window_s": WINDOW_S, "warmup_s": WARMUP_S,
            "latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS, "cores": CORES}


def bound_by(row: dict[str, Any]) -> str:
    """What limits a row's rate, read from its figures: the slots, a worker process's core, or the box."""
    c, cores = row["config"], row["cores"]
    busiest = max((n for n in cores if n.startswith("worker ")), key=cores.__getitem__)
    if row["inflight_avg"] >= 0.95 * c["slots"] and row["rpm"] >= 0.9 * c["ceiling_rpm"]:
        return f"the slots: {row['inflight_avg']:.0f} of {c['slots']} calls in flight, each 4 s"
    if cores["machine"] >= 0.9 * CORES:
        ours = sum(cores[g] for g in GROUPS)
        return (f"the machine's {CORES} cores: {cores['machine']:.2f} busy, {ours:.2f} of them this stack's "
                f"(workers {cores['workers']:.2f}, moto {cores['s3 (moto)']:.2f}), "
                f"{max(0.0, cores['machine'] - ours):.2f} other work on the box")
    if cores[busiest] >= 0.85:
        return f"{busiest}'s one core (its GIL): {cores[busiest]:.2f} cores"
    if row["queued_min"] > 0:  # jobs waited while slots were free: the workers did not start them sooner
        idle = c["slots"] - row["inflight_avg"]
        return (f"starting the jobs: {idle:.0f} of {c['slots']} slots free on average while jobs waited in the "
                f"queue (a freed slot waited ~{idle / max(1e-9, row['rpm'] / 60) * 1000:.0f} ms for its next job): "
                "each worker's main thread dequeues and starts jobs for its free slots between its job threads' "
                f"turns on the GIL; no process at its core's limit (busiest {busiest}: {cores[busiest]:.2f})")
    return "the producer: the queue ran dry (see the queued minimum above)"


def _row_markdown(row: dict[str, Any]) -> list[str]:
    c, rss, cores = row["config"], row["rss_mib"], row["cores"]
    calls_per_s = max(1e-9, row["rpm"] / 60)
    rpm_met = row["rpm"] >= c["target_rpm"]
    rss_met = rss["genpool"]["peak_mib"] / 1024 <= TARGET_RSS_GIB
    lines = [
        f"**{c['processes']} processes x {c['concurrency']} job threads ({c['slots']} slots)**",
        "",
        "| measure | value | vs | target | met |",
        "|---|---:|---:|---|---|",
        f"| answered calls/min, steady window | {row['rpm']:,.0f} | {row['rpm'] / c['ceiling_rpm']:.2f}x of the "
        f"{c['ceiling_rpm']:,.0f}/min ceiling ({c['slots']} slots / {LATENCY_MS / 1000:g} s) | "
        f">= {c['target_rpm']:,}/min | {'yes' if rpm_met else '**no**'} |",
        f"| worst 10 s of the window, per min | {row['rpm_min_10s']:,.0f} | | | |",
        f"| jobs started and not finished (RQ), window average | {row['inflight_avg']:.0f} | "
        f"{row['inflight_avg'] / c['slots']:.2f}x of the slots | | |",
        f"| jobs queued, window minimum (the producer kept up if > 0) | {row['queued_min']:,} | | | |",
        f"| genpool RSS (workers + producer), peak | {rss['genpool']['peak_mib']:,.0f} MiB | "
        f"{rss['genpool']['peak_mib'] / 1024 / TARGET_RSS_GIB:.2f}x of the budget | <= {TARGET_RSS_GIB:g} GiB | "
        f"{'yes' if rss_met else '**no**'} |",
        "",
        "| process | CPU in the steady window, cores | its CPU ms per answered call (all the row's calls) | peak RSS MiB |",
        "|---|---:|---:|---:|",
    ]
    workers = sorted(n for n in cores if n.startswith("worker "))
    for name in (*workers, *GROUPS):
        peak = f"{rss[name]['peak_mib']:,.0f}" if name in rss else ""
        lines.append(f"| {name} | {cores[name]:.2f} | {cores[name] * 1000 / calls_per_s:.1f} | {peak} |")
    lines += [
        f"| **whole machine** ({CORES} cores, other work on the box included) | **{cores['machine']:.2f}** | | |",
        "",
        f"Bound by: {bound_by(row)}. Worker RSS grew {row['worker_rss_growth_mib_per_min'][0]:.0f} MiB/min in the "
        f"first half of the window and {row['worker_rss_growth_mib_per_min'][1]:.0f} MiB/min in the second; worker "
        f"threads at most {max(row['samples']['threads'])}.",
    ]
    return lines


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        f"Each row: PoolWorker processes x job threads, simulator at {LATENCY_MS / 1000:g} s ± {JITTER_MS} ms and no "
        f"quota, a producer process keeping twice the slots queued; steady window {WINDOW_S} s after a "
        f"{WARMUP_S} s ramp. CPU: each process's user + system time over the window, in cores; the machine's "
        "busy time includes whatever else ran on the box.",
        "",
    ]
    for row in figures["rows"]:
        lines += [*_row_markdown(row), ""]
    lines += [
        "Why this design: a Gemini call is seconds of waiting and ~milliseconds of CPU, so one PoolWorker "
        "process holds many calls in flight on threads sharing one google-genai Client, boto3 client and Redis "
        "pool (worker/pool.py), instead of RQ's one job per process; a second process uses the second core. "
        "Workers cap glibc's malloc arenas (GENPOOL_MALLOC_ARENA_MAX, default 2): the 20-minute soak "
        "(`make soak`, RELIABILITY.md \"Worker memory\") shows RSS levelling off.",
        "",
        "![density](bench/plots/bench_density.png)",
    ]
    return "\n".join(lines)


def main() -> int:
    from bench.run_all import RESULTS

    print(markdown(bench(RESULTS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
