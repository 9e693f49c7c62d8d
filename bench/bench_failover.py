"""Failover: the primary model goes hard-down while jobs keep arriving at a steady rate.

    .venv/bin/python -m bench.bench_failover [--json PATH]

Real parts: redis-server, moto's S3 server, the simulator, 3 worker processes x 8 job threads. Phases,
all in one run and on one job stream (RATE_PER_S text jobs a second):

1. baseline: the stream pinned to the fallback model (no fallback, no outage): the fallback's own latency;
   run once before and once after the outages, pooled, so drift in the machine's load is bracketed;
2. ``503``: LEAD_S healthy, then (t0) every primary request answers 503 for OUTAGE_S;
3. ``hang``: the same, but every primary request hangs until the client's call timeout.

During the outages every second job of the stream is a *control*: pinned to the fallback, submitted in
the same seconds to the same workers, so it sees the same machine load (this 2-core box is shared) and
the same worker capacity. For each outage: the share of (unpinned) jobs submitted after t0 + 2 s whose
result record shows a call to the primary (``models_tried``), cross-checked with the simulator's request
log; their p95 latency (submit to result) vs the control's p95 and vs the baseline phases' p95; when the
breaker opened (Redis state hash); the primary's calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY, SimAdmin, WorkerGroup, create_bucket, stack_env
from genpool.shared import keys
from genpool.shared.ratelimit import state

TITLE = "Failover: primary hard-down (target 4: <= 1 % of jobs touch it after 2 s; p95 <= 1.2x fallback's)"

PRIMARY, FALLBACK = "gemini-3.8-flash", "gemini-3.5-flash"
RATE_PER_S = 10.0
WORKERS, CONCURRENCY = 3, 8
BASELINE_S, LEAD_S, OUTAGE_S = 15.0, 5.0, 40.0
GRACE_S = 2.0  # the target's "after the first seconds"
TARGET_SHARE, TARGET_P95_RATIO = 0.01, 1.2
SIM_LATENCY_MS, SIM_JITTER_MS = 300, 100
STALL_S = 1.0  # the catalog's stall_s, scaled like the simulated latency (shipped default: 20 s for ~1-10 s answers)
SIM_CONFIG = {"api_keys": [SIM_KEY], "defaults": {"latency_ms": SIM_LATENCY_MS, "jitter_ms": SIM_JITTER_MS}}
FAULTS = {"503": {"kind": "503", "model": PRIMARY},
          "hang": {"kind": "hang", "model": PRIMARY, "delay_s": 600}}


@dataclass
class Job:
    handle: Any
    submitted_at: float
    pinned: bool  # pinned to the fallback: a baseline or control job


@dataclass
class Services:
    redis: services.Service
    s3: services.Service
    sim: services.Service
    env: dict[str, str]
    workers: WorkerGroup
    pool: Any
    admin: SimAdmin

    def stop(self) -> None:
        self.workers.stop()
        self.pool.connection.close()
        for svc in (self.sim, self.s3, self.redis):
            svc.stop()


def bench_catalog(workdir: Path) -> Path:
    """The default catalog with every model's stall_s set to STALL_S."""
    from genpool.shared.catalog import PRESETS_DIR

    lines = [line for line in (PRESETS_DIR / "default.toml").read_text().splitlines()
             if not line.startswith("stall_s")]
    at = lines.index("[defaults]") + 1
    path = workdir / "catalog.toml"
    path.write_text("\n".join([*lines[:at], f"stall_s = {STALL_S}", *lines[at:]]) + "\n")
    return path


@contextmanager
def running_stack(workdir: Path) -> Iterator[Services]:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    workdir.mkdir(parents=True, exist_ok=True)
    sim_config = workdir / "sim.json"
    sim_config.write_text(json.dumps(SIM_CONFIG))
    red = services.start_redis(workdir=workdir / "redis", appendonly=False)
    s3 = services.start_s3(workdir=workdir / "s3")
    sim = services.start_sim(sim_config, workdir=workdir / "sim")
    env = stack_env(red.url, s3.url, sim.url, SIM_KEY, workdir, GENPOOL_LOG_LEVEL="WARNING",
                    GENPOOL_MODELS_FILE=str(bench_catalog(workdir)))
    create_bucket(env)
    workers = WorkerGroup(env, workdir)
    workers.start(WORKERS, concurrency=CONCURRENCY)
    pool = GenPool.from_env(Settings.from_env(env, dotenv_path=None))
    stack = Services(red, s3, sim, env, workers, pool, SimAdmin(sim.url))
    try:
        yield stack
    finally:
        stack.stop()


# --- the job stream ---------------------------------------------------------------------------------

def stream(stack: Services, seconds: float, pin_every: int, tag: str) -> list[Job]:
    """Submit RATE_PER_S jobs a second for ``seconds`` on a fixed schedule (no catching up in bursts);
    every ``pin_every``-th job is pinned to the fallback (1: all of them, 0: none)."""
    jobs: list[Job] = []
    started = time.monotonic()
    for i in range(int(seconds * RATE_PER_S)):
        time.sleep(max(0.0, started + i / RATE_PER_S - time.monotonic()))
        pinned = pin_every > 0 and i % pin_every == pin_every - 1
        request: dict[str, Any] = {"kind": "text", "prompt": f"failover {tag} job {i}"}
        if pinned:
            request.update(model=FALLBACK, allow_fallback=False)
        submitted_at = time.time()
        jobs.append(Job(stack.pool.submit(request), submitted_at, pinned))
    return jobs


def results(stack: Services, jobs: list[Job], timeout_s: float = 90.0) -> list[tuple[Job, Any]]:
    records = stack.pool.wait_all([j.handle for j in jobs], timeout_s=timeout_s)
    return list(zip(jobs, records, strict=True))


def latency_s(job: Job, record: Any) -> float:
    return float(record.finished_at - job.submitted_at)


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def touched_primary(record: Any) -> bool:
    return any(a.model == PRIMARY and a.attempt > 0 for a in record.attempt_log)


# --- the breaker, seen from Redis --------------------------------------------------------------------

@dataclass
class BreakerWatch:
    """Polls the primary's state hash; every distinct ``opened_at_ms`` is one opening (first or re-open)."""

    conn: redis.Redis
    openings_ms: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            raw = self.conn.hget(keys.model_state(PRIMARY), state.OPENED_AT_MS)
            if raw is not None and int(raw) not in self.openings_ms:
                self.openings_ms.append(int(raw))

    @contextmanager
    def watching(self) -> Iterator[BreakerWatch]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=2)


# --- phases ------------------------------------------------------------------------------------------

def baseline(stack: Services, tag: str) -> list[float]:
    done = results(stack, stream(stack, BASELINE_S, pin_every=1, tag=tag))
    return [latency_s(j, r) for j, r in done if r is not None and r.status == "finished"]


def outage(stack: Services, variant: str) -> dict[str, Any]:
    stack.pool.connection.delete(keys.model_state(PRIMARY))  # a closed breaker to start from
    stack.admin.faults([])
    lead_at = time.time()
    lead = stream(stack, LEAD_S, pin_every=2, tag=f"{variant}-lead")
    watch = BreakerWatch(stack.pool.connection)
    with watch.watching():
        t0 = time.time()  # taken before the fault is posted: the grace period is not stretched
        stack.admin.faults([FAULTS[variant]])
        during = stream(stack, OUTAGE_S, pin_every=2, tag=variant)
        done = results(stack, lead + during)
    stack.admin.faults([])
    figures = summarize(done, t0, watch.openings_ms)
    figures.update(t0=t0, lead_at=lead_at)
    return figures


def summarize(done: list[tuple[Job, Any]], t0: float, openings_ms: list[int]) -> dict[str, Any]:
    after = [(j, r) for j, r in done if j.submitted_at >= t0 + GRACE_S and not j.pinned]
    since_t0 = [(j, r) for j, r in done if j.submitted_at >= t0 and not j.pinned]
    control = [latency_s(j, r) for j, r in done
               if j.pinned and j.submitted_at >= t0 + GRACE_S and r is not None and r.status == "finished"]
    finished = [(j, r) for j, r in after if r is not None and r.status == "finished"]
    touched = [r for _, r in after if r is not None and touched_primary(r)]
    lat = [latency_s(j, r) for j, r in finished]
    lat_all = [latency_s(j, r) for j, r in since_t0 if r is not None and r.status == "finished"]
    opened = [ms / 1000 - t0 for ms in sorted(openings_ms) if ms / 1000 >= t0]
    return {
        "jobs_after_grace": len(after),
        "jobs_after_grace_touching_primary": len(touched),
        "share_touching_primary": len(touched) / max(1, len(after)),
        "unfinished_or_failed": sum(1 for _, r in done if r is None or r.status != "finished"),
        "p50_s": statistics.median(lat) if lat else float("nan"),
        "p95_s": p95(lat),
        "p95_since_t0_s": p95(lat_all),
        "control_jobs": len(control),
        "control_p95_s": p95(control),
        "max_s": max(lat) if lat else float("nan"),
        "breaker_opened_after_s": opened[0] if opened else None,
        "breaker_openings": len(opened),
        "primary_calls_in_records": sum(  # every job of the variant, the healthy lead included
            sum(1 for a in r.attempt_log if a.model == PRIMARY and a.attempt > 0) for _, r in done if r is not None),
        "model_used": dict(Counter(r.model_used for _, r in finished)),
    }


# --- the simulator's request log ----------------------------------------------------------------------

def read_log(stack: Services) -> list[dict[str, Any]]:
    time.sleep(1.3)  # the simulator flushes its request log every second
    path = stack.sim.workdir / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log_figures(log: list[dict[str, Any]], lead_at: float, t0: float, end: float) -> dict[str, Any]:
    primary = [r for r in log if r["model"] == PRIMARY and t0 <= r["t"] < end]
    late = [r for r in primary if r["t"] >= t0 + GRACE_S]
    return {
        "sim_primary_calls": sum(1 for r in log if r["model"] == PRIMARY and lead_at <= r["t"] < end),
        "sim_primary_calls_since_t0": len(primary),
        "sim_primary_calls_after_grace": len(late),
        "sim_primary_after_grace_at_s": [round(r["t"] - t0, 2) for r in late],
        "sim_primary_by_reason": dict(Counter(r["reason"] for r in primary)),
    }


def per_second(log: list[dict[str, Any]], t0: float, end: float) -> dict[str, list[int]]:
    """Calls per second to each model, from LEAD_S before t0 until ``end``."""
    start = t0 - LEAD_S
    width = int(end - start) + 1
    series = {PRIMARY: [0] * width, FALLBACK: [0] * width}
    for r in log:
        if r["model"] in series and start <= r["t"] < end:
            series[r["model"]][int(r["t"] - start)] += 1
    return series


def plot(figures: dict[str, Any]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from bench.run_all import PLOTS
    except ImportError:
        return None
    variants = [v for v in FAULTS if v in figures]
    fig, axes = plt.subplots(len(variants), 1, figsize=(8, 2.6 * len(variants)), squeeze=False)
    for ax, variant in zip(axes[:, 0], variants, strict=True):
        _plot_variant(ax, variant, figures[variant])
    fig.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / "bench_failover.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return "bench/plots/bench_failover.png"


def _plot_variant(ax: Any, variant: str, f: dict[str, Any]) -> None:
    for model, series in f["calls_per_s"].items():
        xs = [i - LEAD_S for i in range(len(series))]
        ax.step(xs, series, where="post", label=f"calls to {model}" + (" (control jobs too)" if model == FALLBACK else ""))
    ax.axvline(0, color="red", linestyle="--", label="t0: outage starts")
    if f.get("breaker_opened_after_s") is not None:
        ax.axvline(f["breaker_opened_after_s"], color="black", linestyle=":", label="breaker open")
    ax.set_title(f"primary answers {variant}" if variant == "503" else "primary hangs until the call timeout",
                 fontsize=9)
    ax.set_xlabel("s since t0")
    ax.set_ylabel("calls / s")
    ax.legend(fontsize=7, loc="upper right")


# --- the benchmark -----------------------------------------------------------------------------------

def warm_up(stack: Services) -> None:
    records = stack.pool.wait_all([stack.pool.submit({"kind": "text", "prompt": f"warm {i}"})
                                   for i in range(2 * WORKERS * CONCURRENCY)], timeout_s=60)
    if any(r is None or r.status != "finished" for r in records):
        raise RuntimeError(f"warm-up jobs did not finish: {stack.workers.logs()[-3000:]}")


def run_phases(stack: Services) -> dict[str, Any]:
    warm_up(stack)
    base = baseline(stack, "baseline-before")
    figures: dict[str, Any] = {}
    spans: dict[str, tuple[float, float, float]] = {}
    for variant in FAULTS:
        figures[variant] = outage(stack, variant)
        spans[variant] = (figures[variant]["lead_at"], figures[variant]["t0"], time.time())
    base += baseline(stack, "baseline-after")
    log = read_log(stack)
    for variant, (lead_at, t0, end) in spans.items():
        figures[variant].update(log_figures(log, lead_at, t0, end))
        figures[variant]["calls_per_s"] = per_second(log, t0, min(end, t0 + OUTAGE_S + 5))
        f = figures[variant]
        f["p95_ratio"] = f["p95_s"] / f["control_p95_s"]
        f["p95_since_t0_ratio"] = f["p95_since_t0_s"] / f["control_p95_s"]
        f["p95_vs_baseline_ratio"] = f["p95_s"] / p95(base)
        f["control_vs_baseline_ratio"] = f["control_p95_s"] / p95(base)
    figures["baseline"] = {"jobs": len(base), "p50_s": statistics.median(base), "p95_s": p95(base)}
    # A stall reported for a healthy model would open its breaker: count the fallback's openings.
    opened = stack.pool.connection.hget(keys.model_state(FALLBACK), state.OPENED_TOTAL)
    figures["fallback_breaker_openings"] = int(opened or 0)
    return figures


def bench(workdir: Path) -> dict[str, Any]:
    with running_stack(workdir / "failover") as stack:
        figures = run_phases(stack)
    figures["config"] = {"rate_per_s": RATE_PER_S, "workers": WORKERS, "concurrency": CONCURRENCY,
                         "outage_s": OUTAGE_S, "grace_s": GRACE_S, "sim_latency_ms": SIM_LATENCY_MS,
                         "sim_jitter_ms": SIM_JITTER_MS, "stall_s": STALL_S}
    figures["plot"] = plot(figures)
    return figures


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _row(variant: str, f: dict[str, Any]) -> list[str]:
    share_ok = f["share_touching_primary"] <= TARGET_SHARE
    p95_ok = f["p95_ratio"] <= TARGET_P95_RATIO
    opened = f["breaker_opened_after_s"]
    return [
        f"| {variant}: jobs (not pinned) submitted after t0 + {GRACE_S:.0f} s that called the primary | "
        f"{f['jobs_after_grace_touching_primary']} / {f['jobs_after_grace']} = "
        f"{100 * f['share_touching_primary']:.2f} % | <= {100 * TARGET_SHARE:.0f} % | {_met(share_ok)} |",
        f"| {variant}: p95 job latency (submit to result) of those jobs vs the fallback's own (control jobs "
        f"pinned to it in the same seconds) | {f['p95_s']:.2f} s / {f['control_p95_s']:.2f} s = "
        f"{f['p95_ratio']:.2f}x | <= {TARGET_P95_RATIO}x | {_met(p95_ok)} |",
        f"| {variant}: the same, every job submitted from t0 on (the first {GRACE_S:.0f} s included) | "
        f"{f['p95_since_t0_s']:.2f} s / {f['control_p95_s']:.2f} s = {f['p95_since_t0_ratio']:.2f}x | | |",
        f"| {variant}: p95 vs the baseline phases (pinned, no outage; other seconds, other machine load) | "
        f"{f['p95_vs_baseline_ratio']:.2f}x (control: {f['control_vs_baseline_ratio']:.2f}x) | | |",
        f"| {variant}: breaker open fleet-wide after t0 | "
        f"{'never' if opened is None else f'{opened:.2f} s'} ({f['breaker_openings']} openings incl. re-opens "
        f"after failed half-open probes) | | |",
        f"| {variant}: calls the primary got since t0, half-open probes included (simulator log) | "
        f"{f['sim_primary_calls_since_t0']}; after t0 + {GRACE_S:.0f} s: {f['sim_primary_calls_after_grace']} | | |",
        f"| {variant}: cross-check, primary calls from the healthy lead on: simulator log / result records | "
        f"{f['sim_primary_calls']} / {f['primary_calls_in_records']} | equal | "
        f"{_met(f['sim_primary_calls'] == f['primary_calls_in_records'])} |",
    ]


def markdown(figures: dict[str, Any]) -> str:
    c, b = figures["config"], figures["baseline"]
    lines = [
        f"{c['workers']} worker processes x {c['concurrency']} job threads; {c['rate_per_s']:.0f} text jobs/s "
        f"for {LEAD_S:.0f} s healthy, then {c['outage_s']:.0f} s with the primary ({PRIMARY}) down; simulated "
        f"latency {c['sim_latency_ms']} +- {c['sim_jitter_ms']} ms; every second job is a control pinned to the "
        f"fallback ({FALLBACK}). Baseline phases: the whole stream pinned to the fallback, no outage, "
        f"{b['jobs']} jobs before and after the outages: p50 {b['p50_s']:.2f} s, p95 {b['p95_s']:.2f} s.",
        "",
        "| measure | this run | target | |",
        "|---|---:|---:|---|",
    ]
    for variant in FAULTS:
        if variant in figures:
            lines += _row(variant, figures[variant])
    lines += ["", *_notes(figures)]
    if figures.get("plot"):
        lines += ["", f"![calls per second to the primary and the fallback]({figures['plot']})"]
    return "\n".join(lines)


def _notes(figures: dict[str, Any]) -> list[str]:
    notes = []
    for variant in FAULTS:
        f = figures.get(variant)
        if f is None:
            continue
        notes.append(f"- {variant}: primary calls since t0 by simulator outcome: {f['sim_primary_by_reason']}; "
                     f"after the grace period at t0 + {f['sim_primary_after_grace_at_s'][:8]} s; jobs unfinished "
                     f"or failed: {f['unfinished_or_failed']}; slowest job after the grace period: {f['max_s']:.1f} s.")
    notes.append(f"- Hang detection: the catalog's `stall_s` is {figures['config']['stall_s']} s here (the simulated "
                 "latency is 0.2-0.4 s); a call that old while no later call to the model has answered counts as a "
                 "breaker failure, so the breaker opens before the 30 s call timeouts. Shipped default: 20 s. "
                 f"Breaker openings of the healthy fallback (false stalls): {figures['fallback_breaker_openings']}.")
    notes.append("- After the first seconds, the primary is called only by the breaker's half-open probe: one job per "
                 "open period. The first period is 30 s, so in this 40 s window 1 / (30 s x job rate) of the jobs "
                 "(0.67 % at 5 unpinned jobs/s; below ~3.3 jobs/s that would exceed 1 %); each failed probe doubles "
                 "the period up to 300 s, so over a long outage the share falls towards 1 / (300 s x job rate). A "
                 "probe's call is cut at stall_s, so a probe into a hung model costs its job about stall_s (the slowest "
                 "job above), not the 30 s call timeout.")
    notes.append("- Machine load comes and goes on a 2-core box. The latency "
                 "target is judged against the control jobs (same seconds, same workers, same load); the ratio to the "
                 "baseline phases is shown too: it moves with the machine's load between phases, and the control's "
                 "own ratio to the baseline shows how much of it is load rather than the outage.")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench/out"))
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    figures = bench(args.workdir)
    print(markdown(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
