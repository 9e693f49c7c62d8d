"""Shared fixtures: real redis-server, real S3 server (moto), the Gemini simulator, and fakeredis.

Session-scoped processes are started once; per-test fixtures flush state so tests stay independent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack import services


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
