"""The limiter against the quota's own window (issue #12): a backlog and an idle batch, beside a naive pool.

    .venv/bin/python -m bench.bench_window [--window-s 60] [--rpm 60] [--json PATH]

One model per pool, the same quota on each in the simulator (RPM over a sliding window), both pools at
once against one simulator. Everything is measured from the simulator's request log, from the moment
the jobs were submitted (no phase a user waits through is left out):

1. **Idle batch**: 0.8x the quota into an idle window. Every request should start within 1 s.
2. **Backlog**: 2.5x the quota, 8 request slots per pool. The ideal schedule starts L requests at
   t = 0, L at t = W, ... so the last one starts at floor((N - 1) / L) * W; target: the last request
   within 1.05x of that, quota 429s <= 0.5 %, occupancy >= 95 % over the whole busy period (first window
   included: windows (t - W, t] ending every 0.5 s from the submit until fewer than L jobs are left).
3. **Start-to-arrival delay**: each genpool request's granted start (Redis clock, the attempt log's
   ``start_ms``) against its arrival at the simulator (matched by a prompt of unique length): what the
   limiter's guard (``guard_ms``) must cover.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench.bench_quota import admission, stop_procs, wait_until, window_count
from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY, SimAdmin, WorkerGroup, create_bucket, stack_env
from genpool.shared.ratelimit.limits import DEFAULT_GUARD_MS

TITLE = "The limiter against the quota's own window: idle batch, backlog, start-to-arrival delay (#12)"
NAME = "bench_window"
MAKESPAN_TARGET, QUOTA_429_TARGET, OCCUPANCY_TARGET, BATCH_START_TARGET_S = 1.05, 0.005, 0.95, 1.0


@dataclass(frozen=True)
class Config:
    window_s: float = 60.0
    rpm: int = 60
    backlog_x: float = 2.5
    batch_x: float = 0.8
    slots: int = 8  # the backlog: genpool 2 processes x 4 threads, naive 8 processes
    batch_procs: int = 2  # the idle batch: genpool 2 processes x 32 threads (naive keeps its 8)
    batch_concurrency: int = 32
    latency_ms: int = 300
    jitter_ms: int = 100

    @property
    def backlog(self) -> int:
        return round(self.backlog_x * self.rpm)

    @property
    def batch(self) -> int:
        return round(self.batch_x * self.rpm)

    def ideal_last_start_s(self, jobs: int) -> float:
        return (jobs - 1) // self.rpm * self.window_s


def _models() -> list[str]:
    return [f"{pool}-{phase}" for pool in ("genpool", "naive") for phase in ("batch", "backlog")]


def sim_config(cfg: Config) -> dict[str, Any]:
    return {"defaults": {"latency_ms": cfg.latency_ms, "jitter_ms": cfg.jitter_ms},
            "models": {m: {"rpm": cfg.rpm, "window_s": cfg.window_s} for m in _models()}}


def genpool_catalog(cfg: Config, model: str) -> str:
    """One model, the catalog's defaults for everything genpool decides (safety, guard_ms)."""
    lines = ["[defaults]", f"window_s = {cfg.window_s}", "", f'[models."{model}"]', f"rpm = {cfg.rpm}", "",
             "[chains]"] + [f'{kind} = ["{model}"]' for kind in ("text", "chat", "json", "image")]
    return "\n".join(lines) + "\n"


def prompt(i: int) -> str:
    """A prompt of i + 1 tokens in the simulator's count (4 characters a token): the request's id in the log."""
    return "q" * (4 * (i + 1))


@contextmanager
def running_services(run_dir: Path, cfg: Config) -> Iterator[dict[str, services.Service]]:
    sim_cfg = run_dir / "sim.json"
    sim_cfg.write_text(json.dumps(sim_config(cfg)))
    started: dict[str, services.Service] = {}
    try:
        started["redis"] = services.start_redis(workdir=run_dir / "redis", appendonly=False)
        started["s3"] = services.start_s3(workdir=run_dir / "s3")
        started["sim"] = services.start_sim(sim_cfg, workdir=run_dir / "sim")
        yield started
    finally:
        for svc in started.values():
            svc.stop()


def start_naive(redis_url: str, sim_url: str, model: str, count: int, run_dir: Path) -> list[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "bench.naive", "--redis-url", redis_url, "--sim-url", sim_url,
            "--models", model, "--retries", "2"]
    log = open(run_dir / "naive.log", "ab")  # noqa: SIM115 - handed to the children
    root = Path(__file__).resolve().parent.parent
    return [subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            for _ in range(count)]


# --- one phase: both pools get the same jobs at once --------------------------------------------------

@dataclass(frozen=True)
class Phase:
    name: str
    jobs: int
    genpool_procs: int
    genpool_concurrency: int
    naive_procs: int
    time_limit_s: float


def run_phase(phase: Phase, cfg: Config, svc: dict[str, services.Service], run_dir: Path) -> dict[str, Any]:
    from rq import Worker

    from bench import naive
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    model = f"genpool-{phase.name}"
    catalog = run_dir / f"catalog-{phase.name}.toml"
    catalog.write_text(genpool_catalog(cfg, model))
    env = stack_env(svc["redis"].url, svc["s3"].url, svc["sim"].url, SIM_KEY, run_dir,
                    GENPOOL_MODELS_FILE=str(catalog), GENPOOL_LOG_LEVEL="WARNING")
    create_bucket(env)
    pool = GenPool.from_env(Settings.from_env(env, dotenv_path=None))
    naive_url = svc["redis"].url.rsplit("/", 1)[0] + "/1"
    naive_conn = redis.Redis.from_url(naive_url)
    naive_conn.flushdb()
    (run_dir / phase.name).mkdir(exist_ok=True)
    workers = WorkerGroup(env, run_dir / phase.name)
    naive_procs: list[subprocess.Popen[bytes]] = []
    try:
        workers.start(phase.genpool_procs, concurrency=phase.genpool_concurrency)
        naive_procs = start_naive(naive_url, svc["sim"].url, f"naive-{phase.name}", phase.naive_procs, run_dir)
        wait_until(lambda: Worker.count(connection=pool.connection) >= phase.genpool_procs, 60, "genpool workers")
        wait_until(lambda: int(naive_conn.get(naive.READY) or 0) >= phase.naive_procs, 60, "naive workers")
        time.sleep(1.0)  # every worker is blocked on its queue, idle
        t0 = time.time()
        handles = pool.submit_many([{"kind": "text", "prompt": prompt(i)} for i in range(phase.jobs)])
        naive_conn.rpush(naive.QUEUE, *[prompt(i) for i in range(phase.jobs)])
        records = _drain(pool, handles, naive_conn, phase)
    finally:
        stop_procs(naive_procs)
        workers.stop()
        naive_conn.close()
        pool.connection.close()
    return {"t0": t0, "starts_ms": {r.prompt_tokens: a.start_ms for r in records if r
                                    for a in r.attempt_log if a.outcome == "ok"},
            "finished": sum(1 for r in records if r and r.status == "finished")}


def _drain(pool: Any, handles: list[Any], naive_conn: redis.Redis, phase: Phase) -> list[Any]:
    from bench import naive

    results: list[Any] = [None] * len(handles)
    deadline = time.monotonic() + phase.time_limit_s
    while time.monotonic() < deadline:
        genpool_done = pool.poll_results(handles, results)
        naive_done = sum(int(v) for v in naive_conn.hvals(naive.DONE))
        if genpool_done >= phase.jobs and naive_done >= phase.jobs:
            break
        time.sleep(0.5)
    return results


# --- the request log ----------------------------------------------------------------------------------

def read_log(path: Path) -> list[dict[str, Any]]:
    time.sleep(1.5)  # the simulator flushes its log every second
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["t"])


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def analyse_batch(rows: list[dict[str, Any]], model: str, t0: float, jobs: int) -> dict[str, Any]:
    mine = [r for r in rows if r["model"] == model]
    ok = [r["t"] - t0 for r in mine if r["status"] == 200]
    return {"requests": len(mine), "ok": len(ok), "quota_429": sum(1 for r in mine if str(r["reason"]).startswith("quota:")),
            "first_start_s": min(ok, default=None), "p50_start_s": _quantile(ok, 0.5),
            "last_start_s": max(ok, default=None), "all_started": len(ok) >= jobs}


def analyse_backlog(rows: list[dict[str, Any]], model: str, t0: float, cfg: Config) -> dict[str, Any]:
    mine = [r for r in rows if r["model"] == model]
    ok = sorted(r["t"] for r in mine if r["status"] == 200)
    quota_429 = sum(1 for r in mine if str(r["reason"]).startswith("quota:"))
    jobs, limit = cfg.backlog, cfg.rpm
    drained_at = admission(ok, jobs - limit, t0)  # bench_quota's rule: busy while a quota of jobs is unserved
    ends = [t0 + 0.5 * i for i in range(1, int((drained_at - t0) / 0.5) + 1)]
    busy = [window_count(ok, end, cfg.window_s) / limit for end in ends]
    first = [window_count(ok, end, cfg.window_s) / limit for end in ends if end <= t0 + cfg.window_s]
    last_s = (ok[-1] - t0) if len(ok) >= jobs else None
    ideal_s = cfg.ideal_last_start_s(jobs)
    return {"requests": len(mine), "ok": len(ok), "quota_429": quota_429,
            "quota_429_share": quota_429 / len(mine) if mine else 0.0,
            "last_start_s": last_s, "ideal_last_start_s": ideal_s,
            "makespan_ratio": last_s / ideal_s if last_s is not None else None,
            "occupancy_busy": sum(busy) / len(busy) if busy else None, "occupancy_first_window":
            sum(first) / len(first) if first else None, "busy_windows": len(busy),
            "peak_window": max((window_count(ok, t, cfg.window_s) for t in ok), default=0)}


def start_delays(rows: list[dict[str, Any]], model: str, starts_ms: dict[int, int]) -> dict[str, Any]:
    """Arrival at the simulator minus the granted start, per request (matched by prompt tokens)."""
    delays = [r["t"] * 1000 - starts_ms[r["prompt_tokens"]] for r in rows
              if r["model"] == model and r["status"] == 200 and r["prompt_tokens"] in starts_ms]
    if not delays:
        return {"n": 0}
    return {"n": len(delays), "min_ms": min(delays), "p50_ms": _quantile(delays, 0.5),
            "p99_ms": _quantile(delays, 0.99), "max_ms": max(delays), "spread_ms": max(delays) - min(delays)}


# --- the run, the plot, the report ------------------------------------------------------------------

def bench(workdir: Path, cfg: Config | None = None) -> dict[str, Any]:
    from bench.run_all import PLOTS

    cfg = cfg or Config()
    run_dir = workdir / "window-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    batch = Phase("batch", cfg.batch, cfg.batch_procs, cfg.batch_concurrency, cfg.slots, 60)
    backlog = Phase("backlog", cfg.backlog, 2, cfg.slots // 2, cfg.slots,
                    cfg.ideal_last_start_s(cfg.backlog) * 1.5 + 60)
    with running_services(run_dir, cfg) as svc:
        SimAdmin(svc["sim"].url).reset()
        ran = {phase.name: run_phase(phase, cfg, svc, run_dir) for phase in (batch, backlog)}
    rows = read_log(run_dir / "sim" / "requests.jsonl")
    figures: dict[str, Any] = {"config": asdict(cfg), "batch": {}, "backlog": {}, "delay": {}}
    for pool in ("genpool", "naive"):
        figures["batch"][pool] = analyse_batch(rows, f"{pool}-batch", ran["batch"]["t0"], cfg.batch)
        figures["backlog"][pool] = analyse_backlog(rows, f"{pool}-backlog", ran["backlog"]["t0"], cfg)
    for phase in ("batch", "backlog"):
        figures["delay"][phase] = start_delays(rows, f"genpool-{phase}", ran[phase]["starts_ms"])
    figures["finished"] = {phase: ran[phase]["finished"] for phase in ran}
    figures["t0"] = {phase: ran[phase]["t0"] for phase in ran}
    plot(rows, figures, cfg, PLOTS / f"{NAME}.png")
    return figures


def ideal_in_window(cfg: Config, x: float) -> int:
    """The ideal schedule's starts in (x - W, x]: exactly the wave that started at floor(x / W) * W."""
    started_before = int(x // cfg.window_s) * cfg.rpm
    return max(0, min(cfg.rpm, cfg.backlog - started_before))


def plot(rows: list[dict[str, Any]], figures: dict[str, Any], cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = figures["t0"]["backlog"]
    fig, (ax, low) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    horizon = cfg.ideal_last_start_s(cfg.backlog) * 1.5 + 10
    xs = [i * 0.5 for i in range(int(horizon / 0.5))]
    for pool, style in (("genpool", "-"), ("naive", "--")):
        mine = [r for r in rows if r["model"] == f"{pool}-backlog"]
        ok = sorted(r["t"] for r in mine if r["status"] == 200)
        limited = sorted(r["t"] for r in mine if str(r["reason"]).startswith("quota:"))
        ax.plot(xs, [window_count(ok, t0 + x, cfg.window_s) for x in xs], style, label=f"{pool}: 200s")
        low.plot(xs, [window_count(limited, t0 + x, cfg.window_s) for x in xs], style, label=f"{pool}: 429s")
    ax.plot(xs, [ideal_in_window(cfg, x) for x in xs], color="grey", linewidth=0.8, label="ideal schedule")
    ax.axhline(cfg.rpm, color="black", linestyle=":", linewidth=0.8, label=f"quota ({cfg.rpm} per {cfg.window_s:g} s)")
    g = figures["backlog"]["genpool"]
    ax.set_title(f"backlog of {cfg.backlog} at {cfg.rpm} RPM: genpool last start {g['last_start_s'] or 0:.1f} s "
                 f"(ideal {g['ideal_last_start_s']:.0f} s), busy occupancy {(g['occupancy_busy'] or 0):.1%}")
    ax.set_ylabel(f"200s in the trailing {cfg.window_s:g} s")
    ax.legend(fontsize=7, loc="lower right")
    low.set_ylabel("429s (trailing)")
    low.set_xlabel("seconds since the backlog was submitted")
    low.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(figures: dict[str, Any]) -> str:
    cfg = Config(**figures["config"])
    gb, nb = figures["batch"]["genpool"], figures["batch"]["naive"]
    g, n = figures["backlog"]["genpool"], figures["backlog"]["naive"]
    d = figures["delay"]
    batch_ok = gb["all_started"] and (gb["last_start_s"] or 99) <= BATCH_START_TARGET_S
    ratio_ok = (g["makespan_ratio"] or 99) <= MAKESPAN_TARGET
    lines = [
        f"One model per pool, {cfg.rpm} requests per {cfg.window_s:g} s sliding window in the simulator "
        f"(latency {cfg.latency_ms} ± {cfg.jitter_ms} ms); genpool with the catalog's defaults (safety 1.0, "
        f"`guard_ms` {DEFAULT_GUARD_MS}); the naive pool (`bench/naive.py`: tenacity, no shared limiter) on its own model at the "
        "same time. Times from the submit, read off the simulator's request log.",
        "",
        f"**Idle batch**: {cfg.batch} jobs ({cfg.batch_x}x the quota) into an idle window; genpool "
        f"{cfg.batch_procs} x {cfg.batch_concurrency} job slots, naive {cfg.slots} processes.",
        "",
        "| | genpool | naive | target (genpool) |",
        "|---|---:|---:|---|",
        f"| first request started after | {_s(gb['first_start_s'])} | {_s(nb['first_start_s'])} | |",
        f"| median start | {_s(gb['p50_start_s'])} | {_s(nb['p50_start_s'])} | |",
        f"| **last request started after** | {_s(gb['last_start_s'])} | {_s(nb['last_start_s'])} | ≤ 1 s: "
        f"{_verdict(batch_ok)} |",
        f"| quota 429s | {gb['quota_429']} | {nb['quota_429']} | |",
        "",
        f"**Backlog**: {cfg.backlog} jobs ({cfg.backlog_x}x the quota), {cfg.slots} request slots each. Ideal: "
        f"{cfg.rpm} at t = 0, {cfg.rpm} at t = {cfg.window_s:g} s, ... the last at "
        f"{g['ideal_last_start_s']:.0f} s.",
        "",
        "| | genpool | naive | target (genpool) |",
        "|---|---:|---:|---|",
        f"| last request started after | {_s(g['last_start_s'])} | {_s(n['last_start_s'])} | |",
        f"| **vs the ideal schedule** | {_ratio(g['makespan_ratio'])} | {_ratio(n['makespan_ratio'])} | ≤ 1.05x: "
        f"{_verdict(ratio_ok)} |",
        f"| **quota 429s**, share of requests | {_pct(g['quota_429_share'], 2)} ({g['quota_429']} of {g['requests']}) "
        f"| {_pct(n['quota_429_share'], 2)} ({n['quota_429']} of {n['requests']}) | ≤ 0.5 %: "
        f"{_verdict(g['quota_429_share'] <= QUOTA_429_TARGET)} |",
        f"| **occupancy, whole busy period** ({g['busy_windows']} windows, first included) | "
        f"{_pct(g['occupancy_busy'])} | {_pct(n['occupancy_busy'])} | ≥ 95 %: "
        f"{_verdict((g['occupancy_busy'] or 0) >= OCCUPANCY_TARGET)} |",
        f"| occupancy, first window only | {_pct(g['occupancy_first_window'])} | {_pct(n['occupancy_first_window'])} | |",
        f"| peak window (the provider's count) | {g['peak_window']} / {cfg.rpm} | {n['peak_window']} / {cfg.rpm} | |",
        "",
        "**Start-to-arrival delay** (genpool: the simulator's arrival time minus the limiter's granted start, same "
        "host clock), which the guard must cover: a request counts for W + `guard_ms`, so one that arrives up to "
        "`guard_ms` later than an earlier one still finds the provider's window as the limiter saw it.",
        "",
        "| phase | requests | min | median | p99 | max | spread (max − min) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in ("batch", "backlog"):
        x = d[phase]
        if x.get("n"):
            lines.append(f"| {phase} | {x['n']} | {x['min_ms']:.0f} ms | {x['p50_ms']:.0f} ms | {x['p99_ms']:.0f} ms "
                         f"| {x['max_ms']:.0f} ms | {x['spread_ms']:.0f} ms |")
    lines += ["", f"![requests in the trailing window, genpool vs naive vs the ideal schedule](bench/plots/{NAME}.png)"]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}x"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=Config.window_s)
    parser.add_argument("--rpm", type=int, default=Config.rpm)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from bench.run_all import run_alone

    return run_alone(bench, markdown, Config(window_s=args.window_s, rpm=args.rpm), args.json)


if __name__ == "__main__":
    sys.exit(main())
