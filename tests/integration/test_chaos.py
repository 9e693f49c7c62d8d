"""Chaos, bounded in time: workers SIGKILLed at random mid-run → every job terminal, none lost, no
duplicate objects."""

from __future__ import annotations

import random
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

JOBS = 300


def test_killed_workers_lose_no_job_and_duplicate_no_object(stack):
    slow = {"latency_ms": 150, "jitter_ms": 50}
    stack.sim.models({m: slow for m in ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite")})
    stack.workers.start(3, concurrency=8)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"chaos job {i}"} for i in range(JOBS)])
    rng = random.Random(7)
    kills = 0
    results = [None] * JOBS
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        done = stack.pool.poll_results(handles, results)
        if done == JOBS:
            break
        if kills < 6 and done > 20 * (kills + 1):
            alive = [i for i, p in enumerate(stack.workers.procs) if p.poll() is None]
            stack.workers.kill(rng.choice(alive))
            kills += 1
            stack.workers.start(1, concurrency=8)  # the replacement a supervisor would start
        time.sleep(0.2)
    missing = [h.id for h, r in zip(handles, results, strict=True) if r is None]
    assert not missing, f"{len(missing)} jobs never finished (kills: {kills}); e.g. {missing[:3]}"
    assert kills >= 3
    assert all(r.status == "finished" for r in results), [r.error for r in results if r.status != "finished"][:3]
    keys = stack.objects()
    assert len(keys) == JOBS == len(set(keys))
    assert {r.storage.key for r in results} == set(keys)
