"""End to end for every job kind: producer → RQ → worker → simulator (real SDK over HTTP) → S3."""

from __future__ import annotations

import json
import zlib

import pytest

from genpool.shared.storage import unpack_metadata

pytestmark = pytest.mark.integration

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
          "required": ["title", "score"]}


def png_size(body: bytes) -> tuple[int, int]:
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert body[12:16] == b"IHDR"
    assert zlib.crc32(body[12:29]) == int.from_bytes(body[29:33], "big")
    return int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")


def assert_complete(record, stack, kind: str) -> None:
    assert record.status == "finished", record.error
    assert record.kind == kind
    assert record.model_used and record.models_tried == [record.model_used]
    assert record.attempts == 1 and record.fallbacks_used == 0
    assert record.finish_reason == "STOP"
    assert record.prompt_tokens > 0 and record.cost_usd >= 0 and record.duration_s > 0
    assert record.storage.bucket == stack.bucket
    assert record.id in record.storage.key
    assert stack.tags(record.storage.key) == {"model": record.model_used, "kind": kind}
    head = stack.s3.head_object(Bucket=stack.bucket, Key=record.storage.key)
    assert list(head["Metadata"]) == ["genpool"]  # one header, packed (#17)
    meta = unpack_metadata(head["Metadata"])
    assert meta["job-id"] == record.id and meta["model"] == record.model_used
    assert meta["finish-reason"] == "STOP" and int(meta["prompt-tokens"]) == record.prompt_tokens


def body(stack, record) -> bytes:
    return stack.s3.get_object(Bucket=stack.bucket, Key=record.storage.key)["Body"].read()


def test_every_kind_end_to_end(stack):
    stack.workers.start(1, concurrency=8)
    handles = {
        "text": stack.pool.submit({"kind": "text", "prompt": "Write a haiku about queues"}),
        "chat": stack.pool.submit({"kind": "chat", "messages": [{"role": "user", "text": "hello there"}]}),
        "json": stack.pool.submit({"kind": "json", "prompt": "rate this film", "json_schema": SCHEMA}),
        "image": stack.pool.submit({"kind": "image", "prompt": "a lighthouse", "preset": "video_background"}),
    }
    records = {kind: h.wait(timeout_s=60) for kind, h in handles.items()}
    for kind, record in records.items():
        assert_complete(record, stack, kind)
    assert "Write a haiku about queues" in body(stack, records["text"]).decode()
    assert "hello there" in body(stack, records["chat"]).decode()
    value = json.loads(body(stack, records["json"]))
    assert isinstance(value["title"], str) and isinstance(value["score"], int)
    width, height = png_size(body(stack, records["image"]))
    assert abs(width / height - 16 / 9) < 0.05
    assert records["image"].model_used == "gemini-3.1-flash-image"
    assert records["text"].model_used == "gemini-3.8-flash"
    assert handles["text"].status() == "finished"


def test_conversation_history_survives_between_jobs(stack):
    stack.workers.start(1, concurrency=4)
    first = stack.pool.submit({"kind": "chat", "conversation_id": "conv-1", "message": "my name is Ada"})
    assert first.wait(timeout_s=30).status == "finished"
    second = stack.pool.submit({"kind": "chat", "conversation_id": "conv-1", "message": "what is my name"})
    record = second.wait(timeout_s=30)
    assert record.status == "finished" and record.conversation_id == "conv-1"
    turns = [json.loads(t) for t in stack.redis.lrange("genpool:conv:conv-1", 0, -1)]
    assert [r for r, _ in turns] == ["user", "model", "user", "model"]
    assert turns[0][1] == "my name is Ada" and turns[2][1] == "what is my name"


def test_idempotency_key_returns_the_same_job_and_pays_once(stack):
    stack.workers.start(1, concurrency=4)
    a = stack.pool.submit({"kind": "text", "prompt": "once only"}, idempotency_key="order-42")
    b = stack.pool.submit({"kind": "text", "prompt": "once only"}, idempotency_key="order-42")
    assert a.id == b.id and b.existing
    assert a.wait(timeout_s=30).status == "finished"
    assert len(stack.objects()) == 1
