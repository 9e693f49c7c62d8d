"""Quota discipline (issue #8, target 1): genpool vs a naive pool against a quota-enforcing simulator.

    .venv/bin/python -m bench.bench_quota [--window-s 60] [--rpm 100] [--json PATH]

Both pools run at once, in the same run, against one simulator, each on its own three-model chain with the
same per-model quota (RPM per sliding window), so each sees exactly the same conditions and the machine's
noise falls on both. Each gets a backlog of 3x its chain's quota per window and 16 job slots:
genpool as 4 worker processes x concurrency 4 sharing the Redis limiter; the naive pool (bench/naive.py)
as 16 processes with their own client, tenacity retries and fallback. Everything is measured from the
simulator's request log (arrival times, status):

- window occupancy: admitted requests in each sliding window (t - W, t] / the chain's quota, for every
  window that ends after the backlog was enqueued (the first window included: it is where a backlog
  waits first) while at least one window's quota of jobs was still unserved (a pool at quota fills each
  of those completely); sampled every second. The steady-state figure (windows that start after the
  enqueue) is reported beside it;
- quota 429s as a share of all requests the pool sent.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
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

from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY, SimAdmin, WorkerGroup, create_bucket, stack_env
from genpool.shared.ratelimit.limits import DEFAULT_GUARD_MS

TITLE = "Quota discipline over a model chain: genpool vs a naive pool at the quota (#8 target 1, #12 target 3)"
NAME = "bench_quota"
OCCUPANCY_TARGET = 0.97
QUOTA_429_TARGET = 0.005
GENPOOL_PROCS, GENPOOL_CONCURRENCY, NAIVE_PROCS = 4, 4, 16
RETRIES = (2, 2, 3)  # the seed's per-model max_retries down the chain (timeouts 30 / 20 / 15 s)
TIMEOUTS_S = (30, 20, 15)
STAGES = ("primary", "second", "third")


@dataclass(frozen=True)
class Config:
    window_s: float = 60.0
    rpm: int = 100  # per model, per window
    backlog_windows: int = 3
    latency_ms: int = 1000
    jitter_ms: int = 300
    guard_ms: int | None = None  # None: the catalog's default guard

    def chain(self, pool: str) -> list[str]:
        return [f"{pool}-{stage}" for stage in STAGES]

    @property
    def chain_quota(self) -> int:
        return self.rpm * len(STAGES)

    @property
    def backlog(self) -> int:
        return self.backlog_windows * self.chain_quota

    @property
    def time_limit_s(self) -> float:
        return (self.backlog_windows + 1.5) * self.window_s + 20


# --- the services and the two pools -----------------------------------------------------------------

def sim_config(cfg: Config) -> dict[str, Any]:
    models = {m: {"rpm": cfg.rpm, "window_s": cfg.window_s} for pool in ("genpool", "naive") for m in cfg.chain(pool)}
    return {"defaults": {"latency_ms": cfg.latency_ms, "jitter_ms": cfg.jitter_ms}, "models": models}


def genpool_catalog(cfg: Config) -> str:
    lines = ["[defaults]", f"window_s = {cfg.window_s}"]  # safety and guard_ms: the catalog's defaults
    lines += [] if cfg.guard_ms is None else [f"guard_ms = {cfg.guard_ms}"]
    lines.append("")
    chain = cfg.chain("genpool")
    for model, retries, timeout_s in zip(chain, RETRIES, TIMEOUTS_S, strict=True):
        lines += [f'[models."{model}"]', f"rpm = {cfg.rpm}", f"max_retries = {retries}", f"timeout_s = {timeout_s}", ""]
    names = ", ".join(f'"{m}"' for m in chain)
    lines += ["[chains]"] + [f"{kind} = [{names}]" for kind in ("text", "chat", "json", "image")]
    return "\n".join(lines) + "\n"


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


def start_naive(redis_url: str, sim_url: str, cfg: Config, run_dir: Path) -> list[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "bench.naive", "--redis-url", redis_url, "--sim-url", sim_url,
            "--models", ",".join(cfg.chain("naive")), "--retries", ",".join(map(str, RETRIES))]
    log = open(run_dir / "naive.log", "ab")  # noqa: SIM115 - handed to the children
    root = Path(__file__).resolve().parent.parent
    return [subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            for _ in range(NAIVE_PROCS)]


def stop_procs(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_until(ready: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout_s} s")
        time.sleep(0.2)


# --- one run ------------------------------------------------------------------------------------------

def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Both pools drain their backlog at once; returns timings and counts (the log is read afterwards)."""
    from rq import Worker

    from bench import naive
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    with running_services(run_dir, cfg) as svc:
        catalog = run_dir / "catalog.toml"
        catalog.write_text(genpool_catalog(cfg))
        env = stack_env(svc["redis"].url, svc["s3"].url, svc["sim"].url, SIM_KEY, run_dir,
                        GENPOOL_MODELS_FILE=str(catalog), GENPOOL_LOG_LEVEL="WARNING")
        create_bucket(env)
        pool = GenPool.from_env(Settings.from_env(env, dotenv_path=None))
        naive_url = svc["redis"].url.rsplit("/", 1)[0] + "/1"
        naive_conn = redis.Redis.from_url(naive_url)
        workers = WorkerGroup(env, run_dir)
        naive_procs: list[subprocess.Popen[bytes]] = []
        try:
            workers.start(GENPOOL_PROCS, concurrency=GENPOOL_CONCURRENCY)
            naive_procs = start_naive(naive_url, svc["sim"].url, cfg, run_dir)
            wait_until(lambda: Worker.count(connection=pool.connection) >= GENPOOL_PROCS, 60, "genpool workers")
            wait_until(lambda: int(naive_conn.get(naive.READY) or 0) >= NAIVE_PROCS, 60, "naive workers")
            SimAdmin(svc["sim"].url).reset()
            t0 = time.time()
            handles = pool.submit_many([{"kind": "text", "prompt": f"genpool job {i}"} for i in range(cfg.backlog)])
            naive_conn.rpush(naive.QUEUE, *[f"naive job {i}" for i in range(cfg.backlog)])
            progress = drain(pool, handles, naive_conn, cfg)
        finally:
            stop_procs(naive_procs)
            workers.stop()
            naive_conn.close()
            pool.connection.close()
        progress["t0"] = t0
        return progress


def drain(pool: Any, handles: list[Any], naive_conn: redis.Redis, cfg: Config) -> dict[str, Any]:
    """Poll both pools until each has finished its backlog (or the time limit); when each finished."""
    from bench import naive

    results: list[Any] = [None] * len(handles)
    done_at: dict[str, float | None] = {"genpool": None, "naive": None}
    deadline = time.monotonic() + cfg.time_limit_s
    counts = {"genpool": 0, "naive": 0}
    while time.monotonic() < deadline and None in done_at.values():
        counts["genpool"] = pool.poll_results(handles, results)
        counts["naive"] = sum(int(v) for v in naive_conn.hvals(naive.DONE))
        for name, count in counts.items():
            if done_at[name] is None and count >= cfg.backlog:
                done_at[name] = time.time()
        time.sleep(1.0)
    finished_ok = sum(1 for r in results if r is not None and r.status == "finished")
    grants = [(a.model, a.start_ms / 1000, a.wait_s) for r in results if r is not None
              for a in r.attempt_log if a.outcome == "ok"]
    return {"grants": grants, "done_at": done_at, "finished": {"genpool": finished_ok, "naive": counts["naive"]},
            "naive_requeued": int(naive_conn.get(naive.REQUEUED) or 0)}


# --- the request log --------------------------------------------------------------------------------

def read_log(path: Path, since: float) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((r for r in rows if r["t"] >= since), key=lambda r: r["t"])


def window_count(times: list[float], end: float, window_s: float) -> int:
    """Events in (end - window_s, end], the simulator's own window."""
    return bisect.bisect_right(times, end) - bisect.bisect_right(times, end - window_s)


def busy_ends(ok_times: list[float], t0: float, cfg: Config, first_s: float) -> list[float]:
    """Window ends (every 1 s) from t0 + first_s while at least one window's chain quota of jobs is still
    unserved: until the admission that leaves fewer, the (backlog - quota + 1)-th. A pool at quota fills each
    of those windows (it could start a whole quota in any of them). With a backlog of whole windows, the
    (backlog - quota)-th admission leaves exactly one quota, which a window limiter starts only a window
    later: stopping there would keep only the windows of a replayed burst."""
    drained_at = admission(ok_times, cfg.backlog - cfg.chain_quota, t0)  # fewer than a quota left after it
    ends, end = [], t0 + first_s
    while end < drained_at:
        ends.append(end)
        end += 1.0
    return ends


def admission(ok_times: list[float], index: int, t0: float) -> float:
    """The index-th admission (0-based); the last one if the run stopped before it (t0: none at all)."""
    if index < len(ok_times):
        return ok_times[index]
    return ok_times[-1] if ok_times else t0


def replay_ends(ok_times: list[float], t0: float, cfg: Config) -> list[float]:
    """The steady windows that end while the second window replays the first one's burst: from t0 + W until
    the (backlog - quota)-th admission. Each loses `rate x (guard + lateness)` (docs/ratelimit.md)."""
    until = admission(ok_times, cfg.backlog - cfg.chain_quota - 1, t0)
    return [end for end in busy_ends(ok_times, t0, cfg, cfg.window_s) if end <= until]


def ideal_starts(cfg: Config, slots: int) -> list[float]:
    """The schedule of a perfect pool with `slots` job slots, in seconds after the enqueue: every call takes
    the mean latency and starts the moment a slot is free and a model of the chain has room in its trailing
    window (no guard, no overhead, no jitter). What the same slots allow; the first window is bound by them."""
    latency_s, quota = cfg.latency_ms / 1000, cfg.rpm
    free_at = [0.0] * slots
    per_model: list[list[float]] = [[] for _ in STAGES]
    starts: list[float] = []
    for _ in range(cfg.backlog):
        slot_free = heapq.heappop(free_at)
        opens = [slot_free if len(s) < quota else max(slot_free, s[-quota] + cfg.window_s) for s in per_model]
        model = min(range(len(opens)), key=opens.__getitem__)
        per_model[model].append(opens[model])
        starts.append(opens[model])
        heapq.heappush(free_at, opens[model] + latency_s)
    return sorted(starts)


def analyse_ideal(cfg: Config, slots: int) -> dict[str, Any]:
    starts = ideal_starts(cfg, slots)
    occupancy = {name: _mean([window_count(starts, end, cfg.window_s) / cfg.chain_quota
                              for end in busy_ends(starts, 0.0, cfg, first_s)])
                 for name, first_s in (("occupancy_mean", 1.0), ("occupancy_steady", cfg.window_s))}
    return {"slots": slots, **occupancy, "drained_s": round(starts[-1] + cfg.latency_ms / 1000, 1)}


def analyse_pool(rows: list[dict[str, Any]], pool: str, t0: float, cfg: Config) -> dict[str, Any]:
    chain = cfg.chain(pool)
    mine = [r for r in rows if r["model"] in chain]
    ok = {m: [r["t"] for r in mine if r["model"] == m and r["status"] == 200] for m in chain}
    all_ok = sorted(t for times in ok.values() for t in times)
    ends = busy_ends(all_ok, t0, cfg, 1.0)
    steady = [window_count(all_ok, end, cfg.window_s) / cfg.chain_quota
              for end in busy_ends(all_ok, t0, cfg, cfg.window_s)]
    total = [window_count(all_ok, end, cfg.window_s) / cfg.chain_quota for end in ends]
    replay = [window_count(all_ok, end, cfg.window_s) / cfg.chain_quota for end in replay_ends(all_ok, t0, cfg)]
    quota_429 = sum(1 for r in mine if str(r["reason"]).startswith("quota:"))
    per_model = {m: {
        "requests": sum(1 for r in mine if r["model"] == m),
        "ok": len(ok[m]),
        "quota_429": sum(1 for r in mine if r["model"] == m and str(r["reason"]).startswith("quota:")),
        "occupancy_mean": _mean([window_count(ok[m], end, cfg.window_s) / cfg.rpm for end in ends]),
        "peak_window": max((window_count(ok[m], t, cfg.window_s) for t in ok[m]), default=0),
    } for m in chain}
    return {
        "requests": len(mine), "ok": len(all_ok), "quota_429": quota_429,
        "quota_429_share": quota_429 / len(mine) if mine else 0.0,
        "occupancy_mean": _mean(total), "occupancy_min": min(total, default=None),
        "occupancy_steady": _mean(steady), "occupancy_replay": _mean(replay),
        "windows_steady": len(steady), "windows_replay": len(replay), "windows_measured": len(ends), "models": per_model,
    }


def reuse_late_ms(grants: list[tuple[str, float, float]], cfg: Config) -> dict[str, float]:
    """How late each of the first window's granted starts was reused one window later, beyond W + guard
    (the k-th start on a model against its (k + rpm)-th): what a backlog's later windows lose, start by start."""
    late: list[float] = []
    span_s = cfg.window_s + _guard_ms(cfg) / 1000
    for model in cfg.chain("genpool"):
        starts = sorted(start for m, start, _ in grants if m == model)
        late += [(starts[k + cfg.rpm] - starts[k] - span_s) * 1000 for k in range(min(cfg.rpm, len(starts) - cfg.rpm))]
    if not late:
        return {}
    late.sort()
    return {"n": len(late), "p50_ms": late[len(late) // 2], "p90_ms": late[int(len(late) * 0.9)], "max_ms": late[-1]}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def series(rows: list[dict[str, Any]], model: str, t0: float, t_end: float, window_s: float) -> dict[str, list[float]]:
    ok = [r["t"] for r in rows if r["model"] == model and r["status"] == 200]
    limited = [r["t"] for r in rows if r["model"] == model and str(r["reason"]).startswith("quota:")]
    xs = [t0 + s for s in range(int(t_end - t0) + 2)]
    return {"x": [x - t0 for x in xs], "ok": [window_count(ok, x, window_s) for x in xs],
            "429": [window_count(limited, x, window_s) for x in xs]}


# --- the plot and the report ------------------------------------------------------------------------

def plot(rows: list[dict[str, Any]], figures: dict[str, Any], cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, t_end = figures["t0"], figures["t_end"]
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True, sharey=True)
    unit = "min" if cfg.window_s == 60 else f"{cfg.window_s:g} s window"
    for ax, pool in zip(axes, ("genpool", "naive"), strict=True):
        for model in cfg.chain(pool):
            s = series(rows, model, t0, t_end, cfg.window_s)
            line = ax.plot(s["x"], s["ok"], label=f"{model}: 200s")[0]
            ax.plot(s["x"], s["429"], linestyle=":", color=line.get_color(), label=f"{model}: 429s")
        ax.axhline(cfg.rpm, color="black", linestyle="--", label=f"quota ({cfg.rpm}/{unit} per model)")
        occ = figures[pool]["occupancy_mean"] or 0.0
        ax.set_title(f"{pool}: occupancy {occ:.1%}, quota 429s {figures[pool]['quota_429_share']:.2%} of requests")
        ax.set_ylabel(f"requests / {unit} (trailing)")
        ax.legend(fontsize=7, loc="upper right")
    axes[1].set_xlabel("seconds since the backlog was enqueued")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bench(workdir: Path, cfg: Config | None = None) -> dict[str, Any]:
    from bench.run_all import PLOTS

    cfg = cfg or Config()
    run_dir = workdir / "quota-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    progress = run(cfg, run_dir)
    t0 = progress["t0"]
    rows = read_log(run_dir / "sim" / "requests.jsonl", since=t0)
    t_end = max([r["t"] for r in rows], default=t0)
    figures: dict[str, Any] = {"config": asdict(cfg), "t0": t0, "t_end": t_end, **progress}
    for pool in ("genpool", "naive"):
        figures[pool] = analyse_pool(rows, pool, t0, cfg)
        done = progress["done_at"][pool]
        figures[pool]["drained_s"] = round(done - t0, 1) if done else None
    figures["genpool"]["reuse_late_ms"] = reuse_late_ms(progress["grants"], cfg)
    figures["ideal"] = analyse_ideal(cfg, GENPOOL_PROCS * GENPOOL_CONCURRENCY)
    plot(rows, figures, cfg, PLOTS / f"{NAME}.png")
    return figures


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def _verdict(ok: bool, gap: str) -> str:
    return "met" if ok else f"**not met** ({gap})"


def markdown(figures: dict[str, Any]) -> str:
    cfg = Config(**figures["config"])
    g, n = figures["genpool"], figures["naive"]
    ideal = figures.get("ideal") or analyse_ideal(cfg, GENPOOL_PROCS * GENPOOL_CONCURRENCY)
    occ_ok = (g.get("occupancy_steady") or 0) >= OCCUPANCY_TARGET
    err_ok = g["quota_429_share"] <= QUOTA_429_TARGET
    window = "60 s (Gemini's own)" if cfg.window_s == 60 else f"**{cfg.window_s:g} s (shortened to fit the run time)**"
    lines = [
        f"Each pool: a backlog of {cfg.backlog} text jobs ({cfg.backlog_windows}x its chain's quota), 16 job slots, "
        f"a 3-model chain with {cfg.rpm} requests per {window} sliding window on each model "
        f"(simulated latency {cfg.latency_ms} ± {cfg.jitter_ms} ms). genpool: {GENPOOL_PROCS} worker processes x "
        f"concurrency {GENPOOL_CONCURRENCY} sharing the Redis limiter; naive (`bench/naive.py`): {NAIVE_PROCS} "
        f"processes, each with its own google-genai client, tenacity (exponential backoff + jitter, the seed's "
        f"retries {'/'.join(map(str, RETRIES))}) and fallback down the chain, no shared limiter. Both ran at the "
        "same time against one simulator, each on its own models, so they share the machine's noise. The last "
        f"column but one is a perfect pool with the same {ideal['slots']} slots, computed, not run "
        "(`ideal_starts`: mean latency, no guard, no overhead, no jitter): what those slots allow.",
        "",
        "| measured from the simulator's request log | genpool | naive | genpool / naive | perfect pool, "
        f"{ideal['slots']} slots | target | genpool |",
        "|---|---:|---:|---:|---:|---|---|",
        f"| window occupancy, steady state (windows starting after the enqueue) | {_pct(g.get('occupancy_steady'))} | "
        f"{_pct(n.get('occupancy_steady'))} | {_ratio(g.get('occupancy_steady'), n.get('occupancy_steady'))} | "
        f"{_pct(ideal['occupancy_steady'])} | ≥ 97 % (#12 target 3) | {_verdict(occ_ok, 'see the notes')} |",
        f"| the same over the whole busy period, first window included | {_pct(g['occupancy_mean'])} "
        f"| {_pct(n['occupancy_mean'])} | {_ratio(g['occupancy_mean'], n['occupancy_mean'])} | "
        f"{_pct(ideal['occupancy_mean'])} | reported: genpool / perfect pool = "
        f"{_ratio(g['occupancy_mean'], ideal['occupancy_mean'])} | |",
        f"| the same, only the steady windows that end before the {cfg.backlog - cfg.chain_quota}th admission "
        f"(genpool: {g.get('windows_replay', 0)} windows, the second window replaying the first one's burst) | {_pct(g.get('occupancy_replay'))} | {_pct(n.get('occupancy_replay'))} "
        "| | | | |",
        f"| lowest window | {_pct(g['occupancy_min'])} | {_pct(n['occupancy_min'])} | | | | |",
        f"| quota 429s, share of requests | {_pct(g['quota_429_share'], 2)} ({g['quota_429']} of {g['requests']}) "
        f"| {_pct(n['quota_429_share'], 2)} ({n['quota_429']} of {n['requests']}) | | 0 | ≤ 0.5 % | "
        f"{_verdict(err_ok, 'see below')} |",
        f"| jobs finished | {figures['finished']['genpool']} / {cfg.backlog} | {figures['finished']['naive']} / "
        f"{cfg.backlog} | | {cfg.backlog} | | |",
        f"| backlog drained after | {_secs(g['drained_s'])} | {_secs(n['drained_s'])} | | {_secs(ideal['drained_s'])} "
        f"| reported: genpool / perfect pool = {_ratio(g['drained_s'], ideal['drained_s'])} | |",
        f"| a start's reuse one window later, late beyond W + guard: median / p90 (genpool) | "
        f"{_reuse(g.get('reuse_late_ms') or {})} | | | | | |",
        "",
        "| model | genpool: occupancy, 429s, peak window | naive: occupancy, 429s, peak window |",
        "|---|---|---|",
    ]
    for stage, gm, nm in zip(STAGES, cfg.chain("genpool"), cfg.chain("naive"), strict=True):
        lines.append(f"| {stage} | {_model_cell(g['models'][gm], cfg)} | {_model_cell(n['models'][nm], cfg)} |")
    lines += ["", _notes(figures, cfg), "", f"![requests per window per model vs quota](bench/plots/{NAME}.png)"]
    return "\n".join(lines)


def _reuse(late: dict[str, float]) -> str:
    return f"{late['p50_ms']:.0f} / {late['p90_ms']:.0f} ms" if late else "n/a"


def _guard_ms(cfg: Config) -> int:
    return DEFAULT_GUARD_MS if cfg.guard_ms is None else cfg.guard_ms


def _model_cell(m: dict[str, Any], cfg: Config) -> str:
    return f"{_pct(m['occupancy_mean'])}, {m['quota_429']} of {m['requests']}, {m['peak_window']} / {cfg.rpm}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def _secs(value: float | None) -> str:
    return "not within the time limit" if value is None else f"{value:.0f} s"


def _notes(figures: dict[str, Any], cfg: Config) -> str:
    return (
        "Occupancy counts admitted requests in each sliding window (t − W, t], sampled every second, for every "
        "window that ends after the backlog was enqueued (the first window included) while at least one "
        f"window's chain quota of jobs was still unserved ({figures['genpool']['windows_measured']} windows for "
        f"genpool, {figures['naive']['windows_measured']} for naive). genpool admits against each model's own "
        f"trailing window at the whole quota (safety 1.0): a start counts for W + `guard_ms` ({_guard_ms(cfg)} ms), "
        "so each window of a backlog loses at most the guard, a 100 ms slot and the time deferred jobs take to "
        "come back (docs/ratelimit.md). The steady state is the windows of that span that start after the "
        f"enqueue ({figures['genpool'].get('windows_steady', 'n/a')} for genpool). With a backlog of whole "
        "windows, the last window's jobs wait for its room, so the span runs to their first admission: the "
        "windows in between hold the second window's calls whole. A window that ends while the second window "
        "replays the first one's burst loses `rate x (guard + lateness)`: at the 16 slots' ~15.5 starts/s, "
        "the 500 ms guard alone is 2.6 % of the quota there; the row above shows those windows alone. The whole "
        "busy period also counts the first window's ramp, which the 16 slots bound for any pool: the perfect "
        "pool with the same slots is the yardstick for it. The naive pool "
        f"put {figures['naive_requeued']} jobs back on its queue after every model refused them; it does not read "
        "RetryInfo, so its retries land wherever its backoff puts them. The machine was shared with other "
        "engineers' tests and benchmarks during the run; both pools ran side by side, so that noise fell on both.\n\n"
        "How genpool spreads a backlog over the chain (worker/runner.py): a job first takes a model that can start "
        "its call within 1 s, down the chain, and only if none can waits for the soonest one (up to "
        "`GENPOOL_MAX_LIMITER_WAIT_S`, 5 s) or is deferred. With one pass at 5 s, as first written, every slot "
        "queued on the first two models' reservations and the third model got nothing: measured here before the "
        "change, 98 % on the primary and second but 65 % of the chain's quota, and the backlog took 278 s (the "
        "naive pool: 222 s)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=Config.window_s)
    parser.add_argument("--rpm", type=int, default=Config.rpm)
    parser.add_argument("--guard-ms", type=int, default=None, help="the limiter's arrival guard (default: the catalog's)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from bench.run_all import run_alone

    return run_alone(bench, markdown, Config(window_s=args.window_s, rpm=args.rpm, guard_ms=args.guard_ms), args.json)


if __name__ == "__main__":
    sys.exit(main())
