"""`genpool worker`: start worker processes, each a PoolWorker with many jobs in flight."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import redis

from genpool.shared.catalog import Catalog
from genpool.shared.errors import AuthError, ConfigError, GenpoolError
from genpool.shared.ratelimit import RedisLimiter
from genpool.shared.ratelimit.limits import format_changes
from genpool.shared.routing import RoutingStore
from genpool.shared.settings import Settings, redacted_url
from genpool.worker import logs, memory, stalls
from genpool.worker.pool import PoolWorker, queues_for
from genpool.worker.runtime import Runtime, redis_client, set_runtime
from genpool.worker.warmup import warm_up

log = logging.getLogger("genpool.worker")
KEY_CHECK_TIMEOUT_S = 10.0
EXIT_REFUSED = 2  # the worker refused to start: its one line on stderr says what to set


def check_redis(conn: redis.Redis, url_hint: str) -> None:
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"cannot reach Redis at REDIS_URL ({url_hint}): {exc}") from None
    for problem in durability_problems(_config(conn, "maxmemory-policy", "appendonly")):
        log.warning("%s", problem)


def check_bucket(runtime: Runtime) -> None:
    """Write and delete a probe object: a missing bucket or refused credentials stop the worker here,
    before it takes a job, not after it has paid for an answer it cannot store."""
    try:
        runtime.store.probe(runtime.settings.s3_prefix)
    except ConfigError:
        raise
    except GenpoolError as exc:
        endpoint = runtime.settings.s3_endpoint_url or "AWS"
        raise ConfigError(f"cannot write to S3 bucket {runtime.store.bucket!r} at S3_ENDPOINT_URL ({endpoint}): "
                          f"{exc}") from None


def check_key(runtime: Runtime) -> None:
    """A metadata call (models.get, never billed) on the text chain's head model: a refused key stops the
    worker. Gemini unreachable or the model unknown is not the key's fault: the worker starts and its jobs
    meet that through the failure policy."""
    model = runtime.catalog.chain_for("text", None, True)[0]
    try:
        runtime.gateway.get_model(model, timeout_s=KEY_CHECK_TIMEOUT_S)
    except AuthError as exc:
        raise ConfigError(f"GEMINI_API_KEY was refused by Gemini ({exc}): check the key") from None
    except GenpoolError as exc:
        log.warning("could not check GEMINI_API_KEY (%s: %s); starting anyway", exc.kind, exc)


def durability_problems(config: dict[str, str]) -> list[str]:
    """What in the Redis configuration can lose jobs or results (an empty config: CONFIG is disabled)."""
    problems = []
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        problems.append(f"Redis maxmemory-policy is {policy!r}: queued jobs and results can be evicted; "
                        "set noeviction")
    if config.get("appendonly", "yes") != "yes":
        problems.append("Redis appendonly is off: a Redis restart loses the jobs queued since its last "
                        "snapshot; set appendonly yes (appendfsync everysec)")
    return problems


def _config(conn: redis.Redis, *names: str) -> dict[str, str]:
    try:
        return {str(k): str(v) for name in names for k, v in conn.config_get(name).items()}
    except redis.ResponseError:  # managed Redis often disables CONFIG
        return {}


def prepare(settings: Settings) -> Runtime:
    """Build the process's runtime and check what it depends on: Redis, the bucket, the key. The first
    problem found is a ConfigError whose one line says what to set; no job is taken before."""
    settings.require_api_key()
    runtime = Runtime.build(settings)
    check_redis(runtime.redis, redacted_url(settings.redis_url))
    check_bucket(runtime)
    check_key(runtime)
    warm_up(settings)  # the first job's call leaves when its grant says, not ~0.1-0.5 s later
    sync_limits(runtime.limiter, runtime.catalog)
    sync_routing(runtime.routes)
    runtime.control.poll()  # the routing and budgets in force before the first job
    set_runtime(runtime)
    return runtime


def sync_routing(routes: RoutingStore) -> None:
    """The catalog's chains (and GEMINI_IMAGE_MODEL etc.) win at start, as the limits do; one line per change,
    and one that an operator's override is still in force."""
    change = routes.sync()
    if change.before is not None:
        for line in change.lines():
            log.info("routing %s (catalog)", line)
    if change.override:
        fields = " ".join(f"{k}={v}" for k, v in sorted(change.override.items()))
        log.warning("routing: operator override in force (%s); `genpool models rollback KIND` returns to the "
                    "catalog", fields)


def prepare_waiting(settings: Settings, wait_s: float, pause_s: float = 1.0) -> Runtime:
    """``prepare``, tried again for up to ``wait_s`` while what it checks is not there yet (a stack whose
    Redis, S3 and simulator start together); the last problem is the one reported."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return prepare(settings)
        except ConfigError:
            if time.monotonic() + pause_s > deadline:
                raise
            time.sleep(pause_s)


def sync_limits(limiter: RedisLimiter, catalog: Catalog) -> None:
    """The catalog's limits win at start (the whole fleet reads them on its next acquire); one line
    says what changed, and one that an operator's override is still on top."""
    for model, spec in catalog.models.items():
        change = limiter.sync(model, spec.limits)
        if change.changed:
            log.info("limits %s: %s (catalog)", model, format_changes(change.changed))
        if change.override:
            fields = " ".join(f"{k}={v}" for k, v in sorted(change.override.items()))
            log.warning("limits %s: operator override in force (%s); `genpool limits reset %s` returns to the "
                        "catalog", model, fields, model)


def drain_once(runtime: Runtime) -> int:
    if not runtime.spool.pending():
        return 0
    sent = runtime.results.drain_spool()
    if sent:
        log.info("spool: uploaded %d results that were waiting for S3", sent)
    return sent


def start_spool_drainer(runtime: Runtime, stop: threading.Event, interval_s: float = 5.0) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                drain_once(runtime)
            except Exception:  # noqa: BLE001 - the drainer must outlive any one bad pass (e.g. Redis down)
                log.exception("spool: drain pass failed; trying again in %.0f s", interval_s)

    thread = threading.Thread(target=loop, name="genpool-spool", daemon=True)
    thread.start()
    return thread


def run_one(settings: Settings, concurrency: int, burst: bool, max_jobs: int = 0, wait_s: float = 0.0) -> int:
    memory.cap_arenas(settings.malloc_arena_max)  # before any job thread exists
    runtime = prepare_waiting(settings, wait_s)
    # RQ gets its own pool: it raises its pool's socket timeout to dequeue_timeout + 10 s (for its
    # blocking dequeue), which on the shared pool would also stretch every limiter and result call past
    # GENPOOL_REDIS_TIMEOUT_S while Redis hangs.
    rq_redis = redis_client(settings, pool_size=concurrency + 8)  # job threads finish their RQ jobs on it
    worker = PoolWorker(queues_for(rq_redis), connection=rq_redis, concurrency=concurrency,
                        heartbeat_s=settings.heartbeat_s)
    stop = threading.Event()
    start_spool_drainer(runtime, stop)
    stalls.start_watch(runtime.runner.report_stalls, stop)
    runtime.control.start(stop)
    if runtime.metrics is not None:
        runtime.metrics.start()
    log.info("worker %s: %d jobs in flight at most, queues %s%s", worker.name, concurrency,
             ", ".join(q.name for q in worker.queues), f", recycled after {max_jobs} jobs" if max_jobs else "")
    memory.freeze_startup_heap()  # the last thing before the first job
    try:
        worker.work(burst=burst, logging_level=logging.getLevelName(logs.rq_level(settings.log_level)), max_jobs=max_jobs or None)
    except SystemExit:
        if not worker.cold_shutdown:
            raise
        # Its death is recorded; the job threads cannot be killed and would hold the interpreter's exit
        # until they finish, so leave now: RQ requeues the abandoned jobs (their heartbeats stop).
        log.warning("worker %s: cold shutdown, %d jobs in flight abandoned", worker.name, worker.inflight)
        _close_metrics(runtime)
        logging.shutdown()
        os._exit(0)
    finally:
        stop.set()
        _close_metrics(runtime)
        with contextlib.suppress(Exception):  # best effort at exit; what is left waits for the next start
            drain_once(runtime)
    return 0


def _close_metrics(runtime: Runtime) -> None:
    """The counters of the last second's jobs, written before the process ends."""
    if runtime.metrics is not None:
        with contextlib.suppress(Exception):  # best effort at exit, like the spool's last drain
            runtime.metrics.close()


def run_many(settings: Settings, workers: int, concurrency: int, burst: bool, max_jobs: int = 0,
             wait_s: float = 0.0) -> int:
    """Supervise ``workers`` processes; SIGTERM/SIGINT is passed on for a warm shutdown. A process that
    leaves after its ``max_jobs`` jobs (exit 0, not in burst mode) is replaced by a fresh one."""
    prepare_waiting(settings, wait_s)  # one line here, not one per process, when something is misconfigured
    argv = [sys.executable, "-m", "genpool.worker.main", "--supervised", "--concurrency", str(concurrency),
            "--max-jobs", str(max_jobs)] + (["--burst"] if burst else [])
    stopping = threading.Event()
    procs = [subprocess.Popen(argv) for _ in range(workers)]

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return memory.supervise(procs, lambda: subprocess.Popen(argv), recycle=bool(max_jobs) and not burst,
                            stopping=stopping)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool worker", description="Run genpool workers.")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default GENPOOL_WORKERS, 1)")
    parser.add_argument("--concurrency", type=int, default=None, help="jobs in flight per process")
    parser.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    parser.add_argument("--max-jobs", type=int, default=None,
                        help="recycle a worker process after this many jobs (default GENPOOL_WORKER_MAX_JOBS; 0 = never)")
    parser.add_argument("--wait-for-deps", type=float, default=0.0, metavar="S",
                        help="retry the start-up checks (Redis, bucket, key) for up to S seconds")
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)  # one process of run_many
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_format)
        concurrency = args.concurrency or settings.concurrency
        max_jobs = settings.worker_max_jobs if args.max_jobs is None else max(0, args.max_jobs)
        workers = args.workers or settings.workers
        if not args.supervised and (workers > 1 or (max_jobs and not args.burst)):
            return run_many(settings, workers, concurrency, args.burst, max_jobs, args.wait_for_deps)
        return run_one(settings, concurrency, args.burst, max_jobs, args.wait_for_deps)
    except GenpoolError as exc:
        print(f"genpool worker: {exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
