"""S3 down for a window while jobs finish: results go to the workers' durable local spool and are uploaded
when S3 answers again. 0 results lost, each object exactly once, every record points at its object.

The outage is a frozen S3 server (SIGSTOP): connections are accepted by the kernel and then nothing
answers, the worst case for a client (it must time out, not hang). moto keeps objects in memory, so it is
paused, not restarted; this test runs its own S3 server so the session's is never paused.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from genpool.devstack import services
from genpool.devstack.stack import stack_env
from genpool.shared import keys
from genpool.shared.storage import unpack_metadata
from tests.conftest import SIM_TEST_KEY, Stack

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(180)]

JOBS = 120
MODELS = ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite")


@pytest.fixture
def s3_stack(redis_url, sim_url, tmp_path):
    s3 = services.start_s3(workdir=tmp_path / "s3")
    env = stack_env(redis_url, s3.url, sim_url, SIM_TEST_KEY, tmp_path, GENPOOL_S3_TIMEOUT_S="1")
    st = Stack(env, tmp_path, sim_url)
    yield st, s3
    if s3.proc.poll() is None:
        s3.proc.send_signal(signal.SIGCONT)
    st.workers.stop()
    st.pool.connection.close()
    s3.stop()


def _spooled(spool_dir: Path) -> int:
    return len(list(spool_dir.glob("*.json"))) if spool_dir.is_dir() else 0


def _wait(predicate, timeout_s: float, poll_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def test_s3_outage_spools_results_and_uploads_them_later(s3_stack):
    stack, s3 = s3_stack
    spool_dir = Path(stack.env["GENPOOL_SPOOL_DIR"])
    stack.sim.models({m: {"latency_ms": 100, "jitter_ms": 30} for m in MODELS})
    stack.workers.start(2, concurrency=8)  # two processes share one spool directory, as on one host
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"s3 outage job {i}"} for i in range(JOBS)])
    results = [None] * JOBS
    assert _wait(lambda: stack.pool.poll_results(handles, results) >= 20, 60)

    s3.proc.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    most_spooled, first_spool_s = 0, None

    def spooled_enough() -> bool:
        nonlocal most_spooled, first_spool_s
        most_spooled = max(most_spooled, _spooled(spool_dir))
        if most_spooled and first_spool_s is None:
            first_spool_s = time.monotonic() - paused_at
        return most_spooled >= 16

    spooled_in_time = _wait(spooled_enough, 60)
    outage_s = time.monotonic() - paused_at
    s3.proc.send_signal(signal.SIGCONT)
    assert spooled_in_time, f"only {most_spooled} results spooled while S3 was down"

    assert _wait(lambda: stack.pool.poll_results(handles, results) == JOBS, 90)
    assert _wait(lambda: _spooled(spool_dir) == 0, 40), "the spool was not drained after S3 came back"
    print(f"\ns3 outage: {JOBS} jobs, S3 frozen {outage_s:.1f} s, {most_spooled} results spooled, first one "
          f"{first_spool_s:.1f} s after the freeze; all uploaded after it came back")

    assert all(r.status == "finished" for r in results), [r.error for r in results if r.status != "finished"][:3]
    object_keys = stack.objects()
    assert len(object_keys) == len(set(object_keys)) == JOBS
    assert {r.storage.key for r in results} == set(object_keys)
    for r in results:
        head = stack.s3.head_object(Bucket=r.storage.bucket, Key=r.storage.key)
        assert unpack_metadata(head["Metadata"])["job-id"] == r.id
        assert head["ContentLength"] > 0
    assert stack.redis.scard(keys.spool_index()) == 0, "uploaded results are still listed as spooled"
    assert list(spool_dir.glob("*.body")) == []
    assert [p.poll() for p in stack.workers.procs] == [None, None], "a worker quit during the S3 outage"
