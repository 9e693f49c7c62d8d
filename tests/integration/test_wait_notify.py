"""Waiting for results with ``notify`` (#17, shared/notify.py, producer/waiting.py) on the real stack: the
worker announces each record on the producer's stream, so the wait reads each record about once instead
of every pending record five times a second. Counted in keys read (MGET), not timed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from genpool.shared import keys
from genpool.shared.jobs import ResultRecord

pytestmark = pytest.mark.integration
JOBS = 40
TEXT_CHAIN = ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite")


def _count_keys_read(monkeypatch: pytest.MonkeyPatch, stack: Any) -> list[int]:
    """Result keys the producer reads (its MGETs), summed."""
    read = [0]
    mget: Callable[..., Any] = stack.redis.mget

    def counting(names: list[str], *args: Any) -> Any:
        read[0] += len(names)
        return mget(names, *args)

    monkeypatch.setattr(stack.redis, "mget", counting)
    return read


def _slow_models(stack: Any) -> None:
    stack.sim.models({m: {"latency_ms": 300, "jitter_ms": 0} for m in TEXT_CHAIN})


def test_wait_all_reads_each_announced_record_about_once(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_models(stack)
    stack.workers.start(1, concurrency=4)  # ~10 rounds of 0.3 s calls: polling would read ~15 times
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"notify {i}"} for i in range(JOBS)], notify=True)
    read = _count_keys_read(monkeypatch, stack)
    seen: list[int] = []
    started = time.monotonic()
    records = stack.pool.wait_all(handles, timeout_s=120, on_progress=seen.append)
    elapsed_s = time.monotonic() - started
    assert all(r is not None and r.status == "finished" for r in records), records
    assert [r.id for r in records if r] == [h.id for h in handles]
    # Polled (before #17): every pending key every 0.2 s, ~2.5 reads a job per second of the wait. Announced:
    # the first read of all, each announced record once, and the pending ones every 3 s (how many of those
    # depends on how long a loaded machine takes, hence the bound in elapsed time; polling exceeds it past 1.4 s).
    assert read[0] <= JOBS * (3 + elapsed_s / 3), (read[0], elapsed_s)
    assert seen == sorted(seen) and seen[-1] == JOBS
    stream = keys.results_notify(handles[0].notify.waiter)
    assert 0 < stack.redis.ttl(stream) <= 60  # kept by its waiter, gone a minute after


def test_a_waited_job_is_woken_by_its_announcement(stack: Any) -> None:
    stack.workers.start(1, concurrency=2)
    handle = stack.pool.submit({"kind": "text", "prompt": "one job, notified"}, notify=True)
    record = handle.wait(timeout_s=60)
    assert record.status == "finished" and record.id == handle.id
    announced = stack.redis.xrange(keys.results_notify(handle.notify.waiter))
    assert [f[b"job"].decode() for _, f in announced if b"job" in f] == [handle.id]


def test_a_record_nobody_announces_is_still_found(stack: Any) -> None:
    """A record written without an announcement (a worker of an earlier release, RQ's cleanup of an
    abandoned job): the wait reads every pending record every few seconds."""
    handle = stack.pool.submit({"kind": "text", "prompt": "no worker runs this"}, notify=True)
    record = ResultRecord(id=handle.id, status="failed", kind="text")
    stack.redis.set(keys.result(handle.id), record.model_dump_json(), ex=60)
    assert stack.pool.wait_all([handle], timeout_s=30) == [record]
    late = stack.pool.submit({"kind": "text", "prompt": "written while the wait blocks"}, notify=True)
    late_record = ResultRecord(id=late.id, status="failed", kind="text")
    writer = threading.Timer(0.5, stack.redis.set, (keys.result(late.id), late_record.model_dump_json()))
    writer.start()
    try:
        assert late.wait(timeout_s=30) == late_record
    finally:
        writer.cancel()


def test_nobody_waiting_leaves_no_stream(stack: Any) -> None:
    stack.workers.start(1, concurrency=2)
    handle = stack.pool.submit({"kind": "text", "prompt": "nobody waits on the stream"}, notify=True)
    deadline = time.monotonic() + 60
    while handle.result() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handle.result() is not None
    assert stack.redis.exists(keys.results_notify(handle.notify.waiter)) == 0  # XADD NOMKSTREAM
