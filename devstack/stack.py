"""A whole genpool stack on loopback: env for the services, worker processes, the simulator's admin API.

Used by the integration tests, `make run` and the benchmarks, so all three run the same real parts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIM_KEY = "sim-local-key"  # a key for the local simulator only; never a real credential


def stack_env(redis_url: str, s3_url: str, sim_url: str | None, api_key: str, workdir: Path,
              bucket: str = "genpool-results", **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url, "GEMINI_API_KEY": api_key, "S3_ENDPOINT_URL": s3_url, "S3_BUCKET": bucket,
        "S3_PREFIX": "genpool", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1", "GENPOOL_SPOOL_DIR": str(workdir / "spool"),
        "GENPOOL_HEARTBEAT_S": "1",
    }
    if sim_url:
        env["GEMINI_BASE_URL"] = sim_url
    env.update(extra)
    return env


def create_bucket(env: dict[str, str]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    try:
        client.head_bucket(Bucket=env["S3_BUCKET"])
    except Exception:  # noqa: BLE001 - create on any miss
        client.create_bucket(Bucket=env["S3_BUCKET"])


@dataclass
class WorkerGroup:
    """Worker processes started with `python -m genpool.worker.main`."""

    env: dict[str, str]
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, count: int = 1, concurrency: int = 16, burst: bool = False) -> None:
        argv = [sys.executable, "-m", "genpool.worker.main", "--concurrency", str(concurrency)] + (["--burst"] if burst else [])
        child_env = {**_base_env(), **self.env}
        for _ in range(count):
            n = len(self.procs)
            log = open(self.workdir / f"worker-{n}.log", "ab")  # noqa: SIM115 - handed to the child
            self.procs.append(subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                               cwd=self.workdir, start_new_session=True))

    def wait_registered(self, redis_url: str, count: int, timeout_s: float = 60.0) -> None:
        """Until ``count`` workers are registered with RQ (past their start-up checks): a test that needs a
        live worker must not race one still importing on a loaded machine."""
        import redis
        from rq import Worker

        conn = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + timeout_s
        try:
            while Worker.count(connection=conn) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{count} workers did not register in {timeout_s:g} s\n{self.logs()[-2000:]}")
                time.sleep(0.1)
        finally:
            conn.close()

    def kill(self, index: int) -> None:
        proc = self.procs[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=5)

    def stop(self, timeout_s: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("worker-*.log")))


def _base_env() -> dict[str, str]:
    """The parent's environment without genpool/cloud variables, so only the stack's own apply."""
    drop = ("GEMINI_", "GENPOOL_", "S3_", "AWS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "REDIS_URL"}


class SimAdmin:
    """The simulator's loopback admin API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, path: str, body: Any | None = None) -> Any:
        """GET ``/_sim/<path>`` (no body) or POST it a JSON body; the decoded JSON reply."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/_sim/{path}", data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def reset(self) -> None:
        self.call("reset", {})

    def faults(self, faults: list[dict[str, Any]]) -> None:
        self.call("faults", {"faults": faults})

    def models(self, models: dict[str, dict[str, Any]]) -> None:
        self.call("models", {"models": models})

    def stats(self) -> Any:
        return self.call("stats")
