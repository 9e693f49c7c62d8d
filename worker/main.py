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
from collections.abc import Sequence

import redis

from genpool.shared.catalog import Catalog
from genpool.shared.errors import ConfigError, GenpoolError
from genpool.shared.ratelimit import RedisLimiter
from genpool.shared.ratelimit.limits import format_changes
from genpool.shared.routing import RoutingStore
from genpool.shared.settings import Settings
from genpool.worker import logs, stalls
from genpool.worker.pool import PoolWorker, queues_for
from genpool.worker.runtime import Runtime, redis_client, set_runtime

log = logging.getLogger("genpool.worker")


def check_redis(conn: redis.Redis, url_hint: str) -> None:
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"cannot reach Redis at REDIS_URL ({url_hint}): {exc}") from None
    for problem in durability_problems(_config(conn, "maxmemory-policy", "appendonly")):
        log.warning("%s", problem)


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


def _redacted(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def prepare(settings: Settings) -> Runtime:
    """Build the process's runtime and check its dependencies, with one clear line per problem."""
    settings.require_api_key()
    runtime = Runtime.build(settings)
    check_redis(runtime.redis, _redacted(settings.redis_url))
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


def run_one(settings: Settings, concurrency: int, burst: bool) -> int:
    runtime = prepare(settings)
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
    log.info("worker %s: %d jobs in flight at most, queues %s", worker.name, concurrency,
             ", ".join(q.name for q in worker.queues))
    try:
        worker.work(burst=burst, logging_level=settings.log_level)
    except SystemExit:
        if not worker.cold_shutdown:
            raise
        # Its death is recorded; the job threads cannot be killed and would hold the interpreter's exit
        # until they finish, so leave now: RQ requeues the abandoned jobs (their heartbeats stop).
        log.warning("worker %s: cold shutdown, %d jobs in flight abandoned", worker.name, worker.inflight)
        logging.shutdown()
        os._exit(0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):  # best effort at exit; what is left waits for the next start
            drain_once(runtime)
    return 0


def run_many(workers: int, concurrency: int, burst: bool) -> int:
    """Supervise ``workers`` processes; SIGTERM/SIGINT is passed on for a warm shutdown."""
    argv = [sys.executable, "-m", "genpool.worker.main", "--concurrency", str(concurrency)] + (["--burst"] if burst else [])
    procs = [subprocess.Popen(argv) for _ in range(workers)]

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes, default=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool worker", description="Run genpool workers.")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=None, help="jobs in flight per process")
    parser.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_format)
        concurrency = args.concurrency or settings.concurrency
        if args.workers > 1:
            return run_many(args.workers, concurrency, args.burst)
        return run_one(settings, concurrency, args.burst)
    except GenpoolError as exc:
        print(f"genpool worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
