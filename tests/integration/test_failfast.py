"""Misconfiguration fails fast and costs nothing (#14): a worker refuses to start in one line before any paid
call; a bucket that goes away mid-run costs no second call and leaves every job a record; a conversation's
turns never interleave, whoever sends them. Real redis-server, moto S3, the simulator, worker processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genpool.devstack import services
from genpool.shared import keys
from tests.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
NO_AWS_FILES = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
                "AWS_EC2_METADATA_DISABLED": "true"}


def sim_calls(stack: Stack) -> int:
    return sum(int(m["requests"]) for m in stack.sim.stats()["models"].values())


def start_worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GENPOOL_", "S3_", "AWS_"))}
    return subprocess.Popen([sys.executable, "-m", "genpool.worker.main", "--concurrency", "4"],
                            env={**base, **NO_AWS_FILES, **env}, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _misconfigure(env: dict[str, str], what: str) -> tuple[dict[str, str], str]:
    env = dict(env)
    if what == "bucket":
        env["S3_BUCKET"] = "no-such-bucket-here"
        return env, "S3 bucket 'no-such-bucket-here' does not exist: create it or set S3_BUCKET"
    if what == "credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        return env, "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if what == "key":
        env["GEMINI_API_KEY"] = "not-the-key"
        return env, "GEMINI_API_KEY was refused by Gemini"
    if what == "redis":
        env["REDIS_URL"] = f"redis://127.0.0.1:{services.free_port()}/0"
        return env, "cannot reach Redis at REDIS_URL"
    env["REDIS_URL"] = "notaurl"
    return env, "REDIS_URL='notaurl' is not a Redis URL"


@pytest.mark.parametrize("what", ["bucket", "credentials", "key", "redis", "redis_url"])
def test_a_misconfigured_worker_refuses_to_start_in_one_line_before_any_call(stack: Stack, what: str) -> None:
    handle = stack.pool.submit({"kind": "text", "prompt": "queued before a worker starts"})
    env, expected = _misconfigure(stack.env, what)
    proc = start_worker(env, stack.workdir)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("genpool worker: ") and expected in lines[0], stderr
    assert sim_calls(stack) == 0
    assert handle.status() == "queued"


def test_a_bucket_revoked_mid_run_costs_no_second_call_and_every_job_has_a_record(stack: Stack) -> None:
    stack.workers.start(1, concurrency=4)
    before = stack.pool.submit_many([{"kind": "text", "prompt": f"before {i}"} for i in range(4)])
    assert all(r and r.status == "finished" for r in stack.pool.wait_all(before, timeout_s=60))
    for key in stack.objects():
        stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    stack.s3.delete_bucket(Bucket=stack.bucket)

    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"after {i}"} for i in range(12)])
    records = stack.pool.wait_all(handles, timeout_s=60)
    assert all(r is not None for r in records), "a job was left without a record"
    assert all(r.status == "failed" and r.error and r.error.type == "configuration" for r in records)
    assert all("S3_BUCKET" in r.error.message for r in records)
    paid = [r for r in records if r.attempts]
    assert all(r.attempts == 1 for r in records if r.attempts), "a job was paid for twice"
    assert sim_calls(stack) == len(before) + len(paid)  # every call once; no RQ retry called again
    assert 1 <= len(paid) <= 4, "jobs after the first refusal should fail before their call"
    assert stack.redis.scard(keys.spool_index()) == len(paid)  # the paid answers are kept
    assert all("kept in the worker's spool" in r.error.message for r in paid)

    stack.s3.create_bucket(Bucket=stack.bucket)  # fixed: the drainer uploads what was kept
    deadline = time.monotonic() + 30
    while stack.redis.scard(keys.spool_index()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack.redis.scard(keys.spool_index()) == 0 and len(stack.objects()) == len(paid)
    for record in paid:  # their records now say where the kept answer is
        stored = stack.pool.handle(record.id).result()
        assert stored.status == "finished" and stored.storage and stored.storage.key in stack.objects()
    later = stack.pool.submit({"kind": "text", "prompt": "after the fix"}).wait(timeout_s=60)
    assert later.status == "finished", later.error
    assert "Traceback" not in stack.workers.logs()


def test_turns_on_one_conversation_never_interleave_with_concurrent_senders(stack: Stack) -> None:
    stack.sim.models({m: {"latency_ms": 150, "jitter_ms": 50}
                      for m in ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite")})
    stack.workers.start(1, concurrency=8)
    senders, per_sender = 3, 4
    sent: dict[str, str] = {}  # job id -> its message
    lock = threading.Lock()

    def send(sender: int) -> None:
        for n in range(per_sender):
            message = f"sender {sender} message {n}"
            handle = stack.pool.submit({"kind": "chat", "conversation_id": "shared-conv", "message": message})
            with lock:
                sent[handle.id] = message

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    records = stack.pool.wait_all([stack.pool.handle(job_id) for job_id in sent], timeout_s=60)
    assert len(sent) == senders * per_sender and all(r is not None and r.status == "finished" for r in records)
    turns = [json.loads(t) for t in stack.redis.lrange(keys.conversation("shared-conv"), 0, -1)]
    assert [role for role, _ in turns] == ["user", "model"] * len(sent), "two user turns in a row"
    # Each answer saw the whole history before it: the simulator's promptTokenCount is ceil(chars / 4) of it.
    for record in records:
        position = turns.index(["user", sent[record.id]])
        seen = sum(len(text) for _, text in turns[:position + 1])
        assert record.prompt_tokens == math.ceil(seen / 4), f"the turn at {position} missed part of the history"


def test_recycled_worker_processes_lose_no_job(stack: Stack) -> None:
    env = {**stack.env, "GENPOOL_WORKER_MAX_JOBS": "15"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GENPOOL_", "S3_", "AWS_"))}
    log = open(stack.workdir / "worker-recycle.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "genpool.worker.main", "--concurrency", "6"],
                            env={**base, **env}, cwd=stack.workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        handles = stack.pool.submit_many([{"kind": "text", "prompt": f"recycle {i}"} for i in range(60)])
        records = stack.pool.wait_all(handles, timeout_s=90)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert all(r is not None and r.status == "finished" for r in records)
    assert len({r.id for r in records if r}) == 60
    text = (stack.workdir / "worker-recycle.log").read_text()
    assert text.count("recycled after its job quota") >= 3, text[-2000:]
    assert sim_calls(stack) == 60
