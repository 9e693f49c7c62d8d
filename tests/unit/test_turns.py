"""A conversation's turn (shared/turns.py, lua/turn.lua): one holder at a time, over when its job's record
exists or the job is lost; a caller that holds the turn already hands it to the producer (the gateway)."""

from __future__ import annotations

import pytest
import redis
from rq.job import Job

from genpool.producer.client import GenPool
from genpool.shared import keys
from genpool.shared.errors import ConversationBusy
from genpool.shared.settings import Settings
from genpool.shared.turns import Turns

MESSAGE = {"kind": "chat", "conversation_id": "c1", "message": "hello"}


@pytest.fixture
def turns(fake_redis: redis.Redis) -> Turns:
    return Turns(fake_redis, sleep=lambda _s: None)


def test_one_holder_at_a_time(turns: Turns) -> None:
    mine = turns.acquire("c1", wait_s=0)
    with pytest.raises(ConversationBusy):
        turns.acquire("c1", wait_s=0)
    turns.release("c1", mine)
    turns.acquire("c1", wait_s=0)


def test_a_jobs_turn_ends_with_its_record(turns: Turns, fake_redis: redis.Redis) -> None:
    mine = turns.acquire("c1", wait_s=0)
    job_id = "a" * 32
    fake_redis.hset(Job.key_for(job_id), "status", "queued")
    assert turns.attach("c1", mine, job_id)
    with pytest.raises(ConversationBusy):
        turns.acquire("c1", wait_s=0)
    fake_redis.set(keys.result(job_id), "{}")
    turns.acquire("c1", wait_s=0)


def test_a_lost_job_holds_the_turn_no_longer(turns: Turns) -> None:
    mine = turns.acquire("c1", wait_s=0)
    turns.attach("c1", mine, "b" * 32)  # neither an RQ hash nor a record: deleted or expired
    turns.acquire("c1", wait_s=0)


def test_the_producer_uses_a_turn_its_caller_holds_and_hands_it_to_the_job(fake_redis: redis.Redis,
                                                                          turns: Turns) -> None:
    pool = GenPool(fake_redis, Settings.from_env({}, dotenv_path=None))
    held = turns.acquire("c1", wait_s=0)
    handle = pool.submit_many([MESSAGE], turn_holders={"c1": held}, turn_wait_s=0)[0]
    assert fake_redis.get(keys.conversation_turn("c1")) == f"job:{handle.id}".encode()
    with pytest.raises(ConversationBusy):
        pool.submit({**MESSAGE, "message": "next"}, turn_wait_s=0.1)
