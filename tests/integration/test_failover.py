"""A hung primary is found fleet-wide before its calls time out (stall detection + the Redis breaker).

Real redis-server, moto S3, the simulator through the SDK, two worker processes.
"""

from __future__ import annotations

import time

import pytest

from genpool.shared import keys
from tests.integration.test_fallback import PRIMARY, SECOND, logs_hint, requests_to, warm_up, write_catalog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def breaker_reason(stack) -> str | None:
    raw = stack.redis.hget(keys.model_state(PRIMARY), "unavailable_reason")
    return raw.decode() if raw else None


def test_hung_primary_opens_the_breaker_on_stalls_before_any_timeout(stack):
    # Calls time out only after 8 s; a call 1 s old while no later call has answered is a stall.
    write_catalog(stack, {PRIMARY: {"timeout_s": 8, "stall_s": 1.0, "max_retries": 0}})
    stack.env["GENPOOL_JOB_DEADLINE_S"] = "30"
    stack.workers.start(2, concurrency=8)
    warm_up(stack)
    stack.sim.faults([{"kind": "hang", "model": PRIMARY, "delay_s": 600}])
    before = []
    for i in range(40):  # a steady stream until the breaker opens (in practice a few)
        before.append(stack.pool.submit({"kind": "text", "prompt": f"into the hang {i}"}))
        if breaker_reason(stack) is not None:
            break
        time.sleep(0.2)
    assert breaker_reason(stack) == "breaker_open:stalled", logs_hint(stack)
    after = [stack.pool.submit({"kind": "text", "prompt": f"after the opening {i}"}) for i in range(10)]
    for record in stack.pool.wait_all(after, timeout_s=20):
        assert record is not None and record.status == "finished", logs_hint(stack)
        assert record.model_used == SECOND and PRIMARY not in record.models_tried, record.attempt_log
    assert requests_to(stack, PRIMARY) <= len(before)  # max_retries 0: one call per earlier job at most
    for record in stack.pool.wait_all(before, timeout_s=25):
        assert record is not None and record.status == "finished", logs_hint(stack)
        assert record.model_used == SECOND, record.attempt_log
        outcomes = [a.outcome for a in record.attempt_log if a.model == PRIMARY]
        assert outcomes in (["timeout"], ["skipped:breaker_open:stalled"]), record.attempt_log
