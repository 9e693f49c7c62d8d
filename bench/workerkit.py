"""What the worker benchmarks share: a private stack on loopback, a one-model catalog, per-process CPU
and memory read from /proc (so only the processes named are counted), and RQ queue helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY, WorkerGroup, create_bucket, stack_env
from genpool.shared import keys

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gemini-3.1-flash-lite"  # served by the simulator out of the box
IMAGE_MODEL = "gemini-3.1-flash-image"
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads, live and finished)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def proc_rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def proc_threads(pid: int) -> int:
    return _status_kib(pid, "Threads")


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def self_rss_bytes() -> int:
    return proc_rss_bytes(os.getpid())


def write_catalog(path: Path, rpm: int, timeout_s: float = 30.0) -> Path:
    """A catalog whose limits are far above anything the benchmark can ask for: the limiter runs its
    full path on every call but never binds."""
    path.write_text("\n".join([
        "[defaults]", "window_s = 60", "max_retries = 2", f"timeout_s = {timeout_s}", "",
        f'[models."{MODEL}"]', f"rpm = {rpm}", f"tpm = {rpm * 10_000}", "",
        f'[models."{IMAGE_MODEL}"]', 'kind = "image"', f"rpm = {rpm}", f"ipm = {rpm}", "",
        "[chains]", *[f'{kind} = ["{MODEL}"]' for kind in ("text", "chat", "json")],
        f'image = ["{IMAGE_MODEL}"]', "",
    ]))
    return path


@dataclass
class Stack:
    redis: services.Service
    s3: services.Service
    sim: services.Service
    env: dict[str, str]
    workdir: Path

    @property
    def pids(self) -> dict[str, int]:
        return {"redis": self.redis.proc.pid, "s3": self.s3.proc.pid, "sim": self.sim.proc.pid}

    def connection(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["REDIS_URL"])

    def workers(self, module: str = "genpool.worker.main") -> WorkerGroup:
        return BenchWorkers(self.env, self.workdir, module=module)


@dataclass
class BenchWorkers(WorkerGroup):
    """devstack's WorkerGroup, started from ``module`` (bench.noop_worker for the no-op baseline)."""

    module: str = "genpool.worker.main"

    def start(self, count: int = 1, concurrency: int = 16, burst: bool = False) -> None:
        argv = [sys.executable, "-m", self.module, "--concurrency", str(concurrency)]
        child_env = {**os.environ, **self.env}
        for _ in range(count):
            log = open(self.workdir / f"worker-{len(self.procs)}.log", "ab")  # noqa: SIM115 - handed to the child
            self.procs.append(subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                               cwd=self.workdir, start_new_session=True))


@contextmanager
def stack(workdir: Path, sim_defaults: dict[str, Any], rpm: int, **extra_env: str) -> Iterator[Stack]:
    """redis-server, moto S3 and the simulator on free loopback ports; stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    sim_config = workdir / "sim.json"
    sim_config.write_text(json.dumps({"api_keys": [SIM_KEY], "defaults": sim_defaults}))
    started: list[services.Service] = []
    try:
        started.append(services.start_redis(workdir=workdir / "redis", appendonly=False))
        started.append(services.start_s3(workdir=workdir / "s3"))
        started.append(services.start_sim(sim_config, workdir=workdir / "sim"))
        catalog = write_catalog(workdir / "catalog.toml", rpm)
        env = stack_env(started[0].url, started[1].url, started[2].url, SIM_KEY, workdir,
                        GENPOOL_MODELS_FILE=str(catalog), PYTHONPATH=str(ROOT), GENPOOL_LOG_LEVEL="WARNING",
                        **extra_env)
        create_bucket(env)
        yield Stack(*started, env=env, workdir=workdir)
    finally:
        for service in reversed(started):
            service.stop()


def wait_for_workers(conn: redis.Redis, count: int, procs: list[Any], timeout_s: float = 60.0) -> None:
    """Until ``count`` RQ workers are registered and their processes have finished importing."""
    from rq import Worker

    deadline = time.monotonic() + timeout_s
    while Worker.count(connection=conn) < count:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker process exited while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not register within {timeout_s} s")
        time.sleep(0.1)
    time.sleep(1.0)


def default_queue(conn: redis.Redis) -> Queue:
    return Queue(keys.queue_name("default"), connection=conn, serializer=JSONSerializer)


def noop(envelope: Any) -> None:
    """The bare RQ job: what the worker class costs per job with nothing to do (one argument, as
    genpool's job guard requires)."""
    return None


NOOP = "bench.workerkit.noop"  # what a bare job names: the no-op, or the parts composed (below)
PARTS = "bench.workerkit.parts"
_PARTS: list[Callable[[int], object]] = []
_PARTS_LOCK = threading.Lock()


def parts(envelope: Any) -> None:
    """The irreducible parts composed in one RQ job: bench.raw_calls' google-genai call and boto3 put, the
    same requests and client settings it measures each alone in a loop, clients built once per process."""
    with _PARTS_LOCK:
        if not _PARTS:
            from bench import raw_calls

            _PARTS.extend((raw_calls.genai_call(), raw_calls.s3_put(raw_calls.BODY_BYTES)))
    for op in _PARTS:
        op(0)


def enqueue_bare(queue: Queue, count: int, func: str = NOOP) -> list[str]:
    """``count`` bare jobs naming ``func`` (the no-op, or the composed parts) with one empty argument."""
    datas = [Queue.prepare_data(func, args=[{}], result_ttl=600) for _ in range(count)]
    with queue.connection.pipeline() as pipe:
        jobs = queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    return [job.id for job in jobs]


def wait_finished(queue: Queue, count_before: int, count: int, timeout_s: float = 300.0) -> None:
    """Until the queue's finished registry holds ``count`` more jobs than it did."""
    deadline = time.monotonic() + timeout_s
    while queue.finished_job_registry.count < count_before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} bare jobs not finished within {timeout_s} s")
        time.sleep(0.05)
