"""A job's live events (worker/progress.py through the runner): order, chunks, restart, fallback, state."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from genpool.producer.client import GenPool
from genpool.shared import errors as e
from genpool.shared import keys
from genpool.shared.errors import ValidationError
from genpool.shared.events import parse_entry
from genpool.shared.jobs import Envelope, new_job_id, parse_request
from genpool.shared.settings import Settings
from genpool.worker.answers import Generation
from genpool.worker.gemini import Call
from genpool.worker.ports import Later, Ports
from genpool.worker.progress import Progress
from genpool.worker.runner import JobFailed, Runner
from tests.unit.test_runner import FakeGateway, World, gen


@dataclass
class Sink:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, job_id: str, type_: str, data: Mapping[str, Any]) -> None:
        self.events.append((type_, dict(data)))

    def types(self) -> list[str]:
        return [t for t, _ in self.events]


class Partial(Exception):
    """Script item: send these chunks, then fail with ``error``."""

    def __init__(self, chunks: list[str], error: e.GenpoolError) -> None:
        super().__init__("partial")
        self.chunks = chunks
        self.error = error


class StreamingGateway(FakeGateway):
    """Hands a streaming call's answer to on_chunk in two pieces (or a Partial's pieces, then its error)."""

    def generate(self, call: Call, model: str, timeout_s: float) -> Generation:
        script = self.scripts.get(model, [])
        head = script[0] if script else None
        if isinstance(head, Partial):
            script.pop(0)
            self.calls.append((model, timeout_s))
            for piece in head.chunks:
                assert call.on_chunk is not None
                call.on_chunk(model, piece)
            raise head.error
        answer = super().generate(call, model, timeout_s)
        if call.on_chunk is not None:
            half = len(answer.text) // 2
            call.on_chunk(model, answer.text[:half])
            call.on_chunk(model, answer.text[half:])
        return answer


def run(world: World, request: dict[str, Any], *, events: bool = True, later: Later | None = None) -> tuple[Sink, Any]:
    sink = Sink()
    ports = Ports(gateway=world.gateway, limiter=world.limiter, availability=world.availability,
                  results=world.results, clock=world.time.clock, wall=world.time.wall, sleep=world.time.sleep,
                  events=sink)
    envelope = Envelope(job_id=new_job_id(), request=parse_request(request), events=events, account="acme")
    try:
        record = Runner(ports, world.catalog, world.config).run(envelope, later=later)
    except JobFailed as exc:
        record = exc.record
    return sink, record


def test_a_streamed_job_publishes_started_chunks_attempt_finished_in_order() -> None:
    w = World(gateway=StreamingGateway({"m1": [gen("hello streaming world")]}))
    sink, record = run(w, {"kind": "text", "prompt": "hi", "stream": True})
    assert sink.types() == ["started", "chunk", "chunk", "attempt", "finished"]
    assert "".join(d["text"] for t, d in sink.events if t == "chunk") == "hello streaming world"
    assert sink.events[-1][1]["model_used"] == "m1" == record.model_used
    assert record.account == "acme"


def test_a_job_that_does_not_stream_publishes_no_chunks() -> None:
    w = World(gateway=StreamingGateway())
    sink, _ = run(w, {"kind": "text", "prompt": "hi"})
    assert sink.types() == ["started", "attempt", "finished"]


def test_a_job_without_events_publishes_nothing() -> None:
    w = World(gateway=StreamingGateway())
    sink, record = run(w, {"kind": "text", "prompt": "hi", "stream": True}, events=False)
    assert sink.events == [] and record.status == "finished"


def test_a_failure_after_partial_output_restarts_then_falls_back() -> None:
    cut = Partial(["half an ans"], e.ConnectionFailed("reset"))
    w = World(gateway=StreamingGateway({"m1": [cut, cut, cut], "m2": [gen("the whole answer")]}))
    sink, record = run(w, {"kind": "text", "prompt": "hi", "stream": True})
    assert record.model_used == "m2"
    assert sink.types() == ["started"] + ["chunk", "attempt", "restart"] * 3 + [
        "fallback", "chunk", "chunk", "attempt", "finished"]
    fallback = next(d for t, d in sink.events if t == "fallback")
    assert fallback == {"from": "m1", "to": "m2", "reason": "connection"}
    last_restart = max(i for i, (t, _) in enumerate(sink.events) if t == "restart")
    after = "".join(d["text"] for t, d in sink.events[last_restart:] if t == "chunk")
    assert after == "the whole answer"


def test_a_failed_job_ends_with_failed_and_the_error() -> None:
    w = World(gateway=StreamingGateway({"m1": [e.AuthError("bad key")]}))
    sink, record = run(w, {"kind": "text", "prompt": "hi", "stream": True})
    assert sink.types() == ["started", "attempt", "failed"]
    assert sink.events[-1][1]["error"]["type"] == "auth" == record.error.type


def test_a_structured_chat_saves_its_reply_as_the_conversation_state() -> None:
    reply = json.dumps({"message": "hello", "state": {"step": 2}})
    w = World(gateway=StreamingGateway({"m1": [gen(reply)]}))
    schema = {"type": "object", "properties": {"message": {"type": "string"}, "state": {"type": "object"}}}
    _, record = run(w, {"kind": "chat", "conversation_id": "c1", "message": "hi", "json_schema": schema})
    assert record.status == "finished"
    assert json.loads(w.results.states[-1] or b"") == {"message": "hello", "state": {"step": 2}}


def test_a_plain_chat_keeps_no_state() -> None:
    w = World(gateway=StreamingGateway())
    run(w, {"kind": "chat", "conversation_id": "c1", "message": "hi"})
    assert w.results.states == [None]


class BrokenSink:
    def publish(self, job_id: str, type_: str, data: Mapping[str, Any]) -> None:
        raise redis.ConnectionError("down")


def test_an_unreachable_event_stream_does_not_fail_the_job() -> None:
    progress = Progress(BrokenSink(), "job")
    progress.emit("started", rerun=False)
    progress.chunk("m1", "text")
    progress.attempt("m1", 1, "ok", 0.1)  # nothing raised


# --- the producer's side: 'queued' with the job, and a payload unchanged for jobs without events ---------


def test_a_job_with_events_is_queued_with_its_first_event_and_account(fake_redis: redis.Redis) -> None:
    pool = GenPool(fake_redis, Settings.from_env({}, dotenv_path=None))
    streamed = pool.submit({"kind": "text", "prompt": "hi", "stream": True}, account="acme", priority="high")
    (entry,) = fake_redis.xrange(keys.job_events(streamed.id))
    assert parse_entry(*entry).type == "queued"
    assert parse_entry(*entry).data == {"kind": "text", "priority": "high", "account": "acme"}
    payload = Job.fetch(streamed.id, connection=fake_redis, serializer=JSONSerializer).args[0]
    assert (payload["events"], payload["account"], payload["request"]["stream"]) == (True, "acme", True)
    plain = pool.submit({"kind": "text", "prompt": "hi"})
    assert not fake_redis.exists(keys.job_events(plain.id))
    payload = Job.fetch(plain.id, connection=fake_redis, serializer=JSONSerializer).args[0]
    assert not {"events", "account"} & set(payload) and "stream" not in payload["request"]  # as before


def test_a_bad_account_is_refused_before_anything_is_enqueued(fake_redis: redis.Redis) -> None:
    pool = GenPool(fake_redis, Settings.from_env({}, dotenv_path=None))
    with pytest.raises(ValidationError, match="account:"):
        pool.submit({"kind": "text", "prompt": "hi"}, account="Not An Account")
    assert fake_redis.dbsize() == 0


def test_a_finished_record_rides_the_jobs_end_unless_a_live_client_waits_for_its_ended_event() -> None:
    """Without events the record is queued for the job's end MULTI (one round trip less); with events it is
    written at once, before the "finished" event that announces it."""
    for events, queued in ((False, True), (True, False)):
        w = World()
        _, record = run(w, {"kind": "text", "prompt": "hi"}, events=events, later=lambda write, after: None)
        assert record.status == "finished" and w.results.later == [queued]
