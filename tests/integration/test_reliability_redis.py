"""Redis restarted mid-run (AOF on, noeviction, as devstack starts it): workers reconnect and finish every
job, none lost, no duplicate object; a producer submitting while Redis is down gets a clear genpool error."""

from __future__ import annotations

import logging
import signal
import time

import pytest

from genpool.shared.errors import ServiceUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(150)]

JOBS = 200
OUTAGE_S = 3.0
MODELS = ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite")


def _wait_results(stack, handles, results, until_done: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    done = stack.pool.poll_results(handles, results)
    while done < until_done and time.monotonic() < deadline:
        time.sleep(0.2)
        done = stack.pool.poll_results(handles, results)
    return done


def _start_workers(stack, count: int) -> None:
    """Workers registered before the outage: one still importing when Redis goes away exits at its start-up
    check ("cannot reach Redis"), which is not what these tests are about (seen on a loaded machine)."""
    stack.workers.start(count, concurrency=8)
    stack.workers.wait_registered(stack.env["REDIS_URL"], count)


def _submit_while_down(stack) -> tuple[type[BaseException] | None, str, float]:
    started = time.monotonic()
    try:
        stack.pool.submit({"kind": "text", "prompt": "submitted while Redis is down"}, idempotency_key="down-1")
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever came out
        return type(exc), str(exc), time.monotonic() - started
    return None, "", time.monotonic() - started


def test_redis_restart_mid_run_loses_no_job(stack, redis_service):
    stack.sim.models({m: {"latency_ms": 150, "jitter_ms": 50} for m in MODELS})
    _start_workers(stack, 2)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"redis restart job {i}"} for i in range(JOBS)])
    results = [None] * JOBS
    before = _wait_results(stack, handles, results, until_done=40, timeout_s=60)
    assert 0 < before < JOBS, "the restart must happen mid-run"

    redis_service.stop()  # SIGTERM: Redis flushes its AOF and exits, as in a managed failover or restart
    error, message, took_s = _submit_while_down(stack)
    time.sleep(OUTAGE_S)
    redis_service.restart()
    restarted_at = time.monotonic()

    assert error is ServiceUnavailable, (error, message)
    assert "Redis" in message
    done = _wait_results(stack, handles, results, until_done=JOBS, timeout_s=100)
    recover_s = time.monotonic() - restarted_at
    alive = [p.poll() is None for p in stack.workers.procs]
    missing = [h.id for h, r in zip(handles, results, strict=True) if r is None]
    print(f"\nredis restart: {JOBS} jobs, {before} done before, outage {OUTAGE_S} s, producer error after "
          f"{took_s:.2f} s, all terminal {recover_s:.1f} s after restart, workers alive {alive}")
    assert not missing, f"{len(missing)} jobs lost; e.g. {missing[:3]}\n{stack.workers.logs()[-3000:]}"
    assert done == JOBS
    assert all(alive), f"a worker quit during the Redis outage\n{stack.workers.logs()[-4000:]}"
    failed = [r for r in results if r.status != "finished"]
    assert not failed, [r.error for r in failed][:3]
    keys = stack.objects()
    assert len(keys) == len(set(keys)) == JOBS
    assert {r.storage.key for r in results} == set(keys)
    # The idempotency key of the refused submit was not left claimed: a retry now enqueues a real job.
    retry = stack.pool.submit({"kind": "text", "prompt": "submitted while Redis is down"}, idempotency_key="down-1")
    assert retry.existing is False
    assert retry.wait(timeout_s=30).status == "finished"


def test_frozen_redis_mid_run_loses_no_job_and_no_worker(stack, redis_service):
    """A Redis that stops answering (SIGSTOP: connections hang, the worst case) for longer than the
    workers' Redis timeout: commands time out, workers keep running and finish every job afterwards."""
    stack.workers.env["GENPOOL_REDIS_TIMEOUT_S"] = "1"
    stack.sim.models({m: {"latency_ms": 150, "jitter_ms": 50} for m in MODELS})
    _start_workers(stack, 2)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"frozen redis job {i}"} for i in range(JOBS)])
    results = [None] * JOBS
    before = _wait_results(stack, handles, results, until_done=40, timeout_s=60)
    assert 0 < before < JOBS

    redis_service.proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        error, message, took_s = _submit_while_down(stack)  # waits out the producer's Redis timeout (5 s)
        time.sleep(max(0.0, OUTAGE_S + 2 - (time.monotonic() - frozen_at)))
    finally:
        redis_service.proc.send_signal(signal.SIGCONT)
    thawed_at = time.monotonic()
    assert error is ServiceUnavailable, (error, message)

    done = _wait_results(stack, handles, results, until_done=JOBS, timeout_s=100)
    alive = [p.poll() is None for p in stack.workers.procs]
    print(f"\nfrozen redis: {JOBS} jobs, {before} done before, frozen {OUTAGE_S + 2:.0f} s, producer error after "
          f"{took_s:.1f} s, all terminal "
          f"{time.monotonic() - thawed_at:.1f} s after, workers alive {alive}")
    assert done == JOBS, f"{JOBS - done} jobs lost\n{stack.workers.logs()[-3000:]}"
    assert all(alive), "a worker quit during the Redis freeze"
    assert all(r.status == "finished" for r in results), [r.error for r in results if r.status != "finished"][:3]
    keys = stack.objects()
    assert len(keys) == len(set(keys)) == JOBS
    # The refused submit's idempotency claim may have reached Redis (sent before the freeze showed): a
    # client retrying with the same key must still get a job that runs, not an id that was never queued.
    # (A claim younger than twice the producer's Redis timeout may still belong to a live submit.)
    time.sleep(max(0.0, 2 * stack.settings.redis_timeout_s + 1 - (time.monotonic() - thawed_at)))
    retry = stack.pool.submit({"kind": "text", "prompt": "submitted while Redis is down"}, idempotency_key="down-1")
    assert retry.wait(timeout_s=30).status == "finished"


def test_start_up_warns_when_redis_can_lose_jobs(real_redis, redis_url, caplog):
    from genpool.worker.main import check_redis

    def warnings() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="genpool.worker"):
            check_redis(real_redis, redis_url)
        return [r.getMessage() for r in caplog.records]

    assert warnings() == []  # devstack's Redis: AOF on, noeviction
    try:
        real_redis.config_set("maxmemory-policy", "allkeys-lru")
        real_redis.config_set("appendonly", "no")
        found = warnings()
    finally:
        real_redis.config_set("maxmemory-policy", "noeviction")
        real_redis.config_set("appendonly", "yes")
    assert any("allkeys-lru" in w and "noeviction" in w for w in found), found
    assert any("appendonly" in w for w in found), found
    assert warnings() == []
