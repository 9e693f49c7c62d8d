"""Producer: validation, enqueueing on RQ with the JSON serializer, idempotency and handles (fakeredis)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from genpool.producer.client import GenPool
from genpool.shared import keys
from genpool.shared.catalog import parse_catalog
from genpool.shared.errors import ServiceUnavailable, ValidationError
from genpool.shared.jobs import ResultRecord
from genpool.shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

REQUESTS: dict[str, dict[str, Any]] = {
    "text": {"kind": "text", "prompt": "Say hello"},
    "chat": {"kind": "chat", "messages": [{"role": "user", "text": "hi"}]},
    "json": {"kind": "json", "prompt": "A cat", "json_schema": {"type": "object",
                                                                "properties": {"name": {"type": "string"}}}},
    "image": {"kind": "image", "prompt": "A red square"},
}


@pytest.fixture
def pool(fake_redis: redis.Redis) -> GenPool:
    return GenPool(fake_redis, Settings.from_env({}, dotenv_path=None))


def queue(conn: redis.Redis, priority: str) -> Queue:
    return Queue(keys.queue_name(priority), connection=conn, serializer=JSONSerializer)


def total_jobs(conn: redis.Redis) -> int:
    return sum(queue(conn, p).count for p in keys.PRIORITIES)


@pytest.mark.parametrize("kind", list(REQUESTS))
@pytest.mark.parametrize("priority", ["high", "default", "low"])
def test_every_kind_is_enqueued_on_its_priority_queue(pool: GenPool, fake_redis: redis.Redis, kind: str,
                                                      priority: str) -> None:
    handle = pool.submit(REQUESTS[kind], priority=priority)
    assert queue(fake_redis, priority).job_ids == [handle.id]
    assert total_jobs(fake_redis) == 1


def test_rq_job_calls_the_task_with_the_envelope(pool: GenPool, fake_redis: redis.Redis) -> None:
    handle = pool.submit(REQUESTS["text"], deadline_s=42)
    job = Job.fetch(handle.id, connection=fake_redis, serializer=JSONSerializer)
    assert job.func_name == "genpool.worker.tasks.generate"
    envelope = job.args[0]
    assert envelope["job_id"] == handle.id
    assert envelope["request"]["prompt"] == "Say hello"
    assert envelope["request"]["kind"] == "text"
    assert envelope["deadline_s"] == 42


def test_default_deadline_comes_from_settings(fake_redis: redis.Redis) -> None:
    settings = Settings.from_env({"GENPOOL_JOB_DEADLINE_S": "77"}, dotenv_path=None)
    handle = GenPool(fake_redis, settings).submit(REQUESTS["text"])
    job = Job.fetch(handle.id, connection=fake_redis, serializer=JSONSerializer)
    assert job.args[0]["deadline_s"] == 77


def test_job_payload_in_redis_is_json_not_pickle(pool: GenPool, fake_redis: redis.Redis) -> None:
    handle = pool.submit(REQUESTS["text"])
    raw = fake_redis.hget(f"rq:job:{handle.id}", "data")
    assert raw is not None
    assert not raw.startswith(b"\x80")  # pickle protocol 2+ opcode
    decoded = json.loads(zlib.decompress(raw))  # RQ stores zlib-compressed serializer output
    assert decoded[0] == "genpool.worker.tasks.generate"
    assert decoded[2][0]["job_id"] == handle.id


def test_submit_many_enqueues_all(pool: GenPool, fake_redis: redis.Redis) -> None:
    handles = pool.submit_many([REQUESTS[k] for k in REQUESTS], priority="low")
    assert len({h.id for h in handles}) == 4
    assert queue(fake_redis, "low").job_ids == [h.id for h in handles]


def test_submit_many_validates_all_before_enqueueing(pool: GenPool, fake_redis: redis.Redis) -> None:
    bad = {"kind": "text", "prompt": ""}
    with pytest.raises(ValidationError, match="prompt"):
        pool.submit_many([REQUESTS["text"], REQUESTS["image"], bad])
    assert total_jobs(fake_redis) == 0


def test_idempotency_keys_must_match_requests(pool: GenPool, fake_redis: redis.Redis) -> None:
    with pytest.raises(ValidationError, match="idempotency_keys"):
        pool.submit_many([REQUESTS["text"]] * 2, idempotency_keys=["a"])
    assert total_jobs(fake_redis) == 0


TINY_CATALOG = {
    "models": {
        "tiny-text": {"input_token_limit": 10},
        "tiny-image": {"kind": "image", "input_token_limit": 10},
    },
    "chains": {"text": ["tiny-text"], "chat": ["tiny-text"], "json": ["tiny-text"], "image": ["tiny-image"]},
}

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"kind": "poem", "prompt": "x"}, "poem"),
    ({"kind": "text", "prompt": ""}, "prompt"),
    ({"kind": "image", "prompt": "x", "aspect_ratio": "7:5"}, "aspect_ratio"),
    ({"kind": "json", "prompt": "x", "json_schema": {"type": "thing"}}, "json_schema"),
    ({"kind": "json", "prompt": "x", "json_schema": {"type": "object", "required": ["a"]}}, "required"),
    ({"kind": "chat"}, "messages"),
    ({"kind": "chat", "messages": [{"role": "user", "text": "a"}, {"role": "model", "text": "b"}]},
     "last chat message must be from the user"),
    ({"kind": "chat", "conversation_id": "c1"}, "message"),
    ({"kind": "text", "prompt": "x", "model": "gemini-9-nonexistent"}, "not in the catalog"),
    ({"kind": "text", "prompt": "x", "model": "gemini-3.1-flash-image"}, "makes image, not text"),
    ({"kind": "image", "prompt": "x", "model": "gemini-3.5-flash"}, "makes text, not image"),
    ({"kind": "text", "prompt": "x", "generation": {"temperature": 3}}, "temperature"),
    ({"kind": "text", "prompt": "x", "generation": {"temperature": -0.1}}, "temperature"),
    ({"kind": "text", "prompt": "x", "colour": "red"}, "colour"),
    ({"kind": "text", "prompt": "x", "generation": {"top_p": 1.5}}, "top_p"),
]


@pytest.mark.parametrize(("request_", "needle"), INVALID)
def test_invalid_requests_give_readable_errors(pool: GenPool, fake_redis: redis.Redis,
                                               request_: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        pool.submit(request_)
    assert needle in str(info.value)
    assert "Value error," not in str(info.value)
    assert total_jobs(fake_redis) == 0


def test_prompt_over_the_chains_largest_input_limit(fake_redis: redis.Redis) -> None:
    catalog = parse_catalog(TINY_CATALOG)
    pool = GenPool(fake_redis, Settings.from_env({}, dotenv_path=None), catalog)
    pool.submit({"kind": "text", "prompt": "x" * 40})  # 10 tokens: fits
    with pytest.raises(ValidationError, match=r"prompt: about 11 tokens.*\(10 tokens\)"):
        pool.submit({"kind": "text", "prompt": "x" * 44})
    assert total_jobs(fake_redis) == 1


def test_chat_history_counts_against_the_input_limit(fake_redis: redis.Redis) -> None:
    catalog = parse_catalog(TINY_CATALOG)
    pool = GenPool(fake_redis, Settings.from_env({}, dotenv_path=None), catalog)
    messages = [{"role": "user", "text": "x" * 20}, {"role": "model", "text": "y" * 20},
                {"role": "user", "text": "z" * 8}]
    with pytest.raises(ValidationError, match="prompt"):
        pool.submit({"kind": "chat", "messages": messages})


def test_bad_priority(pool: GenPool, fake_redis: redis.Redis) -> None:
    with pytest.raises(ValidationError, match="priority: 'urgent'"):
        pool.submit(REQUESTS["text"], priority="urgent")
    assert total_jobs(fake_redis) == 0


def test_same_idempotency_key_returns_the_same_job(pool: GenPool, fake_redis: redis.Redis) -> None:
    first = pool.submit(REQUESTS["text"], idempotency_key="order-1")
    second = pool.submit(REQUESTS["text"], idempotency_key="order-1")
    assert second.id == first.id
    assert first.existing is False
    assert second.existing is True
    assert total_jobs(fake_redis) == 1


def test_different_idempotency_keys_give_different_jobs(pool: GenPool, fake_redis: redis.Redis) -> None:
    a = pool.submit(REQUESTS["text"], idempotency_key="a")
    b = pool.submit(REQUESTS["text"], idempotency_key="b")
    assert a.id != b.id
    assert total_jobs(fake_redis) == 2


def test_duplicate_key_inside_one_submit_many(pool: GenPool, fake_redis: redis.Redis) -> None:
    handles = pool.submit_many([REQUESTS["text"]] * 3, idempotency_keys=["k", "k", None])
    assert handles[0].id == handles[1].id
    assert handles[2].id != handles[0].id
    assert [h.existing for h in handles] == [False, True, False]
    assert total_jobs(fake_redis) == 2


def test_video_background_preset_sets_16_9(pool: GenPool, fake_redis: redis.Redis) -> None:
    handle = pool.submit({"kind": "image", "prompt": "sky", "preset": "video_background"})
    job = Job.fetch(handle.id, connection=fake_redis, serializer=JSONSerializer)
    assert job.args[0]["request"]["aspect_ratio"] == "16:9"
    assert pool.validate({"kind": "image", "prompt": "sky", "aspect_ratio": "16:9",
                          "preset": "video_background"}).aspect_ratio == "16:9"
    with pytest.raises(ValidationError, match="preset video_background is 16:9; aspect_ratio 1:1"):
        pool.validate({"kind": "image", "prompt": "sky", "aspect_ratio": "1:1", "preset": "video_background"})


def test_status_queued_then_unknown(pool: GenPool) -> None:
    handle = pool.submit(REQUESTS["text"])
    assert handle.status() == "queued"
    assert pool.handle("0" * 32).status() == "unknown"


def _record(job_id: str) -> ResultRecord:
    return ResultRecord(id=job_id, status="finished", kind="text", model_used="gemini-3.8-flash",
                        attempts=1, prompt_tokens=3, output_tokens=5)


def test_result_none_until_a_record_exists(pool: GenPool, fake_redis: redis.Redis) -> None:
    handle = pool.submit(REQUESTS["text"])
    assert handle.result() is None
    fake_redis.set(keys.result(handle.id), _record(handle.id).model_dump_json())
    record = handle.result()
    assert isinstance(record, ResultRecord)
    assert record.id == handle.id
    assert record.model_used == "gemini-3.8-flash"
    assert handle.status() == "finished"
    assert handle.wait(timeout_s=0.2).id == handle.id


def test_wait_times_out(pool: GenPool) -> None:
    handle = pool.submit(REQUESTS["text"])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=handle.id):
        handle.wait(timeout_s=0.2, poll_s=0.02)
    assert time.monotonic() - started < 2


def test_poll_results_fills_finished_ones(pool: GenPool, fake_redis: redis.Redis) -> None:
    handles = pool.submit_many([REQUESTS["text"]] * 2)
    fake_redis.set(keys.result(handles[1].id), _record(handles[1].id).model_dump_json())
    results: list[ResultRecord | None] = [None, None]
    assert pool.poll_results(handles, results) == 1
    assert results[0] is None
    assert results[1] is not None and results[1].id == handles[1].id


def _unreachable_pool() -> GenPool:
    # The brief's redis.Redis(port=1, socket_connect_timeout=0.2), without redis-py's own retries
    # (they add seconds of backoff and change nothing about the outcome).
    conn = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=RedisRetry(NoBackoff(), 0))
    return GenPool(conn, Settings.from_env({}, dotenv_path=None))


def test_unreachable_redis_is_service_unavailable() -> None:
    pool = _unreachable_pool()
    with pytest.raises(ServiceUnavailable, match="REDIS_URL"):
        pool.submit(REQUESTS["text"], idempotency_key="k")
    with pytest.raises(ServiceUnavailable, match="REDIS_URL"):
        pool.handle("0" * 32).result()
    with pytest.raises(ServiceUnavailable, match="REDIS_URL"):
        pool.handle("0" * 32).status()


def test_unreachable_redis_on_plain_submit_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match="REDIS_URL"):
        _unreachable_pool().submit(REQUESTS["text"])


def test_producer_import_does_not_pull_in_the_worker_stack() -> None:
    code = "import producer, sys; assert 'google.genai' not in sys.modules and 'boto3' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def _break_enqueue(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("connection reset by peer")

    monkeypatch.setattr(Queue, "enqueue_many", refuse)


def test_failed_enqueue_frees_fresh_idempotency_claims(pool: GenPool, fake_redis: redis.Redis,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    earlier = pool.submit(REQUESTS["text"], idempotency_key="old")
    with monkeypatch.context() as patch:
        _break_enqueue(patch)
        with pytest.raises(ServiceUnavailable, match="REDIS_URL"):
            pool.submit_many([REQUESTS["text"]] * 2, idempotency_keys=["old", "new"])
    assert total_jobs(fake_redis) == 1
    retried = pool.submit_many([REQUESTS["text"]] * 2, idempotency_keys=["old", "new"])
    assert retried[0].id == earlier.id and retried[0].existing is True  # the earlier job keeps its key
    assert retried[1].existing is False  # the failed submit did not leave a claim to a job that never existed
    assert retried[1].status() == "queued"
    assert total_jobs(fake_redis) == 2


@pytest.mark.parametrize("deadline_s", [-1, 100_000])
def test_out_of_range_deadline_is_a_validation_error(pool: GenPool, fake_redis: redis.Redis,
                                                     deadline_s: float) -> None:
    with pytest.raises(ValidationError, match="deadline_s"):
        pool.submit(REQUESTS["text"], deadline_s=deadline_s)
    assert total_jobs(fake_redis) == 0


def test_bad_deadline_does_not_leave_an_idempotency_claim(pool: GenPool, fake_redis: redis.Redis) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the type is the other bug; the leak is this one
        pool.submit(REQUESTS["text"], deadline_s=100_000, idempotency_key="order-9")
    retried = pool.submit(REQUESTS["text"], idempotency_key="order-9")
    assert retried.existing is False
    assert retried.status() == "queued"
