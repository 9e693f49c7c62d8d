"""Shared fixtures: real redis-server, real S3 server (moto), the Gemini simulator, and fakeredis.

Session-scoped processes are started once; per-test fixtures flush state so tests stay independent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from genpool.devstack import services
from genpool.devstack.stack import SimAdmin


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    svc = services.start_redis(workdir=tmp_path_factory.mktemp("redis"))
    yield svc
    svc.stop()


@pytest.fixture
def redis_url(redis_service: services.Service) -> str:
    if redis_service.proc.poll() is not None:  # a chaos test may have killed it
        redis_service.restart()
    client = redis.Redis.from_url(redis_service.url)
    client.flushall()
    client.close()
    return redis_service.url


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> Iterator[redis.Redis]:
    import fakeredis

    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    svc = services.start_s3(workdir=tmp_path_factory.mktemp("s3"))
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def sim_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    """One simulator for the session; tests change faults/quotas through its admin API and reset it."""
    workdir = tmp_path_factory.mktemp("sim")
    config = workdir / "sim.json"
    config.write_text(json.dumps(SIM_TEST_CONFIG))
    svc = services.start_sim(config, workdir=workdir)
    yield svc
    svc.stop()


SIM_TEST_KEY = "test-key-not-a-secret"

# Every model the default catalog and the tests use, with fast latency and no quota unless a test sets one.
SIM_TEST_CONFIG: dict[str, object] = {
    "api_keys": [SIM_TEST_KEY],
    "defaults": {"latency_ms": 5, "jitter_ms": 2},
    "models": {},
}


@pytest.fixture
def sim_url(sim_service: services.Service) -> str:
    import urllib.request

    req = urllib.request.Request(f"{sim_service.url}/_sim/reset", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
    return sim_service.url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove genpool's variables from the environment so a test sets exactly what it means."""
    for name in list(os.environ):
        if name.startswith(("GEMINI_", "GENPOOL_", "S3_", "AWS_")) or name == "REDIS_URL":
            monkeypatch.delenv(name, raising=False)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sim_admin(url: str, path: str, payload: dict[str, object] | None = None) -> Any:
    """The simulator's admin API: GET ``/_sim/<path>``, or POST ``payload`` to it."""
    return SimAdmin(url).call(path, payload)


# --- the whole stack: real redis-server + S3 server + simulator + worker processes --------------------

class Stack:
    def __init__(self, env: dict[str, str], workdir: Path, sim_url: str) -> None:
        import boto3

        from genpool.devstack.stack import SimAdmin, WorkerGroup, create_bucket
        from genpool.producer.client import GenPool
        from genpool.shared.settings import Settings

        self.env = env
        self.workdir = workdir
        create_bucket(env)
        self.settings = Settings.from_env(env, dotenv_path=None)
        self.pool = GenPool.from_env(self.settings)
        self.redis = self.pool.connection
        self.s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name="us-east-1",
                               aws_access_key_id="local", aws_secret_access_key="local")
        self.bucket = env["S3_BUCKET"]
        self.sim = SimAdmin(sim_url)
        self.workers = WorkerGroup(env, workdir)

    def tags(self, key: str) -> dict[str, str]:
        reply = self.s3.get_object_tagging(Bucket=self.bucket, Key=key)
        return {t["Key"]: t["Value"] for t in reply["TagSet"]}

    def objects(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def stack(redis_url: str, s3_service: services.Service, sim_url: str, tmp_path: Path) -> Iterator[Stack]:
    import uuid

    from genpool.devstack.stack import stack_env

    env = stack_env(redis_url, s3_service.url, sim_url, SIM_TEST_KEY, tmp_path,
                    bucket=f"t-{uuid.uuid4().hex[:12]}")
    # Tests that read `genpool stats` right after their jobs: each job's metrics written with its record.
    # The default (summed per worker process, written every second) has its own tests (test_redis_per_job).
    env["GENPOOL_METRICS_FLUSH_S"] = "0"
    st = Stack(env, tmp_path, sim_url)
    yield st
    st.workers.stop()
    st.pool.connection.close()
