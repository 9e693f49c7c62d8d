"""Idempotency claims left behind by a submit that failed after its claim reached Redis (Redis stalled
mid-submit and ran the claim late): a retry with the same key must get a job that runs, never an id that
was never queued; a live claim or one whose job exists is never taken over."""

from __future__ import annotations

import redis
from rq.job import Job

from genpool.producer.client import IDEMPOTENCY_TTL_S, GenPool, _digest
from genpool.shared import keys
from genpool.shared.settings import Settings

REQUEST = {"kind": "text", "prompt": "hello"}


def _pool(conn: redis.Redis) -> GenPool:
    return GenPool(conn, Settings.from_env({}, dotenv_path=None))


def _claim(conn: redis.Redis, idem: str, owner: str, age_s: int) -> str:
    key = keys.idempotency(_digest(idem))
    conn.set(key, owner, ex=IDEMPOTENCY_TTL_S - age_s)
    return key


def test_a_stale_claim_with_no_job_is_taken_over_by_the_retry(fake_redis: redis.Redis) -> None:
    key = _claim(fake_redis, "k1", "f" * 32, age_s=600)
    handle = _pool(fake_redis).submit(REQUEST, idempotency_key="k1")
    assert handle.id != "f" * 32 and not handle.existing
    assert fake_redis.get(key).decode().partition(":")[0] == handle.id
    assert fake_redis.exists(Job.key_for(handle.id))
    again = _pool(fake_redis).submit(REQUEST, idempotency_key="k1")
    assert again.id == handle.id and again.existing


def test_a_fresh_claim_is_left_to_the_submit_that_is_still_enqueueing_it(fake_redis: redis.Redis) -> None:
    key = _claim(fake_redis, "k2", "e" * 32, age_s=1)
    handle = _pool(fake_redis).submit(REQUEST, idempotency_key="k2")
    assert handle.id == "e" * 32 and handle.existing
    assert fake_redis.get(key).decode() == "e" * 32


def test_a_claim_whose_job_exists_or_finished_is_kept(fake_redis: redis.Redis) -> None:
    pool = _pool(fake_redis)
    first = pool.submit(REQUEST, idempotency_key="k3")
    key = keys.idempotency(_digest("k3"))
    fake_redis.expire(key, IDEMPOTENCY_TTL_S - 600)
    assert pool.submit(REQUEST, idempotency_key="k3").id == first.id
    fake_redis.delete(Job.key_for(first.id))  # the job hash expired, its result record remains
    fake_redis.set(keys.result(first.id), "{}")
    assert pool.submit(REQUEST, idempotency_key="k3").id == first.id
