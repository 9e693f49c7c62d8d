"""A first run's head-model acquire rides the job's start MULTI (worker/ahead.py), on the real stack: a real
redis-server watched with MONITOR, worker processes, the simulator and S3. Counts and order, no timings."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from genpool.shared.ratelimit.store import RedisLimiter
from tests.conftest import Stack
from tests.integration.test_failfast import sim_calls

pytestmark = pytest.mark.integration


class Monitor:
    """Every command the real Redis runs, by client connection, while the block runs."""

    def __init__(self, conn: redis.Redis) -> None:
        self._monitor = conn.monitor()
        self.commands: list[tuple[str, list[str]]] = []  # (client, command words)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Monitor:
        self._monitor.__enter__()
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.5)
        self._monitor.connection.disconnect()  # ends listen() in the reader

    def _read(self) -> None:
        try:
            for entry in self._monitor.listen():
                client = f"{entry.get('client_address')}:{entry.get('client_port')}"
                self.commands.append((client, _words(entry["command"])))
        except (redis.ConnectionError, OSError, ValueError, AttributeError):
            return

    def acquires(self) -> list[tuple[bool, str]]:
        """Each limiter acquire (the EVALSHA on a model's keys): (inside a MULTI, the job ids that MULTI starts)."""
        found: list[tuple[bool, str]] = []
        open_multis: dict[str, list[list[str]]] = {}
        for client, words in self.commands:
            name = words[0].upper() if words else ""
            if name == "MULTI":
                open_multis[client] = []
            elif name == "EXEC":
                block = open_multis.pop(client, [])
                started = " ".join(w[1].removeprefix("rq:job:") for w in block
                                   if w[0].upper() == "HSET" and "started" in w and w[1].startswith("rq:job:"))
                found.extend((True, started) for w in block if _is_acquire(w))
            elif client in open_multis:
                open_multis[client].append(words)
            elif _is_acquire(words):
                found.append((False, ""))
        return found


def _words(command: str) -> list[str]:
    return [part.strip('"') for part in command.split(" ")]


def _is_acquire(words: list[str]) -> bool:
    return bool(words) and words[0].upper() == "EVALSHA" and any(w.endswith("}:window") for w in words)


def test_each_first_runs_acquire_rides_its_start_and_the_window_counts_each_call_once(stack: Stack) -> None:
    stack.workers.start(1, concurrency=8)
    assert stack.pool.submit({"kind": "text", "prompt": "warm"}).wait(timeout_s=60).status == "finished"
    with Monitor(stack.redis) as watched:
        handles = stack.pool.submit_many([{"kind": "text", "prompt": f"ride {i}"} for i in range(12)])
        records = stack.pool.wait_all(handles, timeout_s=60)
    assert all(r is not None and r.status == "finished" and r.attempts == 1 for r in records), records
    acquires = watched.acquires()
    assert len(acquires) == len(handles), acquires  # one acquire a job: none made twice
    assert all(inside for inside, _ in acquires), acquires  # every one in a MULTI ...
    started = " ".join(ids for _, ids in acquires).split()
    assert sorted(set(started)) == sorted(h.id for h in handles)  # ... the one that starts its job
    model = records[0].model_used
    assert model and RedisLimiter(stack.redis).levels(model)["rpm"] == sim_calls(stack) == len(handles) + 1


def test_without_the_script_loaded_a_job_acquires_on_its_own_and_pays_once(stack: Stack) -> None:
    """After a Redis restart (no scripts): the acquire riding the start answers NOSCRIPT inside the MULTI,
    the job starts anyway and makes its own acquire (which loads the script)."""
    stack.workers.start(1, concurrency=4)
    assert stack.pool.submit({"kind": "text", "prompt": "warm"}).wait(timeout_s=60).status == "finished"
    stack.redis.script_flush()
    with Monitor(stack.redis) as watched:
        record = stack.pool.submit({"kind": "text", "prompt": "after a flush"}).wait(timeout_s=60)
    assert record.status == "finished" and record.attempts == 1, record
    # NOSCRIPT inside the start's MULTI; then its own: NOSCRIPT again, SCRIPT LOAD, the acquire
    assert [inside for inside, _ in watched.acquires()] == [True, False, False]
    assert sum(1 for _, words in watched.commands if words[:2] == ["SCRIPT", "LOAD"]) >= 1
    assert sim_calls(stack) == 2
    model = record.model_used
    assert model and RedisLimiter(stack.redis).levels(model)["rpm"] == 2  # the refused one reserved nothing
    assert "Traceback" not in stack.workers.logs()


def test_grants_made_at_the_start_of_jobs_that_fail_before_their_call_go_back(stack: Stack) -> None:
    """The bucket is revoked: jobs after the first refusal fail before their call. Each had its grant from its
    start; the window counts only the calls made."""
    stack.workers.start(1, concurrency=4)
    before = stack.pool.submit({"kind": "text", "prompt": "before"}).wait(timeout_s=60)
    assert before.status == "finished" and before.model_used
    for key in stack.objects():
        stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    stack.s3.delete_bucket(Bucket=stack.bucket)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"after {i}"} for i in range(10)])
    records = stack.pool.wait_all(handles, timeout_s=60)
    assert all(r is not None and r.status == "failed" for r in records), records
    unpaid = [r for r in records if r and not r.attempts]
    assert unpaid, "jobs after the first refusal should fail before their call"
    levels = RedisLimiter(stack.redis).levels(before.model_used)
    assert levels["rpm"] == sim_calls(stack) < 1 + len(records)  # the unused grants were given back
