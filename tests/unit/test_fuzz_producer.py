"""Hypothesis fuzz of what enters genpool: producer requests and the payloads a worker reads from Redis.

Every bad input must come out as a clear genpool error (nothing else escapes), and a rejected submit
must leave Redis exactly as it was (nothing enqueued, no idempotency key claimed).
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pydantic
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

from genpool.producer.client import GenPool
from genpool.shared import keys
from genpool.shared.contract import ASPECT_RATIOS
from genpool.shared.errors import GenpoolError, ValidationError
from genpool.shared.jobs import Envelope
from genpool.shared.settings import Settings
from genpool.worker import runtime as worker_runtime
from genpool.worker import tasks
from genpool.worker.jobguard import GenpoolJob, RefusedJob
from genpool.worker.results import ResultStore
from genpool.worker.runner import JobFailed

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- strategies ----------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
odd_text = st.sampled_from(["", " ", "\x00", "../../etc/passwd", "x" * 300, "🙂", "a/b", "{m:x}"]) | st.text(max_size=30)
models = st.sampled_from(["gemini-3.8-flash", "gemini-3.1-flash-image", "no-such-model", "", "GEMINI", "a" * 90])
schemas = st.sampled_from([{"type": "object"}, {"type": "nope"}, {"type": "object", "properties": {"a": 1}},
                           {"$ref": "#/nowhere"}, {}, {"type": "string", "minLength": -1}])
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "model", "system", ""]),
                                           "text": odd_text}), max_size=3)


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return valid | json_values


VALID: tuple[dict[str, Any], ...] = (
    {"kind": "text", "prompt": "hello"},
    {"kind": "chat", "messages": [{"role": "user", "text": "hi"}]},
    {"kind": "chat", "conversation_id": "c-1", "message": "next"},
    {"kind": "json", "prompt": "a cat", "json_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    {"kind": "image", "prompt": "a lighthouse", "aspect_ratio": "16:9"},
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from(["text", "chat", "json", "image", "video", "TEXT", ""]),
    "prompt": odd_text | st.just("p" * 2_000_001),
    "model": models,
    "allow_fallback": st.booleans(),
    "system_instruction": odd_text,
    "messages": messages,
    "conversation_id": odd_text,
    "message": odd_text,
    "json_schema": schemas,
    "aspect_ratio": st.sampled_from([*ASPECT_RATIOS, "1:2", "16:10", ""]),
    "preset": st.sampled_from(["video_background", "poster"]),
    "generation": st.fixed_dictionaries({}, optional={
        "temperature": st.floats(allow_nan=True), "top_k": st.integers(-5, 5000),
        "max_output_tokens": st.integers(-1, 100_000), "stop_sequences": st.lists(odd_text, max_size=7)}),
    "safety": st.lists(st.fixed_dictionaries({"category": odd_text, "threshold": odd_text}), max_size=2),
    "surprise": json_values,
}


@st.composite
def near_valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request of some kind with 0-3 changes (a field dropped, set, or set to junk): the inputs
    where the validators do their work, not just at the outer type check."""
    request = dict(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(FIELDS)))
        if name in request and draw(st.booleans()):
            del request[name]
        else:
            request[name] = draw(_field(FIELDS[name]))
    return request


requests = near_valid_requests() | json_values
deadlines = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 200_000)
priorities = st.sampled_from(["high", "default", "low", "", "urgent", "HIGH"])
idempotency = st.none() | odd_text


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def redis_conn() -> Iterator[fakeredis.FakeRedis]:
    conn = fakeredis.FakeRedis()
    yield conn
    conn.close()


@pytest.fixture
def pool(redis_conn: fakeredis.FakeRedis) -> GenPool:
    return GenPool(redis_conn, Settings.from_env({}, dotenv_path=None))


@pytest.fixture
def results_runtime(redis_conn: fakeredis.FakeRedis) -> Iterator[fakeredis.FakeRedis]:
    """Just enough of a worker runtime for tasks._parse: a ResultStore over fakeredis."""
    store = ResultStore(redis_conn, store=None, spool=None, prefix="genpool", result_ttl_s=60)  # type: ignore[arg-type]
    worker_runtime.set_runtime(SimpleNamespace(results=store))  # type: ignore[arg-type]
    yield redis_conn
    worker_runtime.set_runtime(None)


def _snapshot(conn: fakeredis.FakeRedis) -> dict[bytes, Any]:
    return {k: conn.dump(k) for k in conn.scan_iter()}


# --- producer ------------------------------------------------------------------------------------

@FUZZ
@given(request=requests)
def test_validate_accepts_or_raises_a_genpool_validation_error(pool: GenPool, request: Any) -> None:
    try:
        parsed = pool.validate(request)
    except ValidationError as exc:
        assert str(exc).strip(), "a rejection must say what is wrong"
        event("rejected")
        return
    event("accepted")
    assert parsed.kind in ("text", "chat", "json", "image")
    assert parsed.prompt_chars() >= 1


@FUZZ
@given(request=requests, priority=priorities, key=idempotency, deadline_s=deadlines)
def test_submit_enqueues_or_rejects_without_touching_redis(pool: GenPool, redis_conn: fakeredis.FakeRedis,
                                                           request: Any, priority: str, key: str | None,
                                                           deadline_s: Any) -> None:
    redis_conn.flushall()
    before = _snapshot(redis_conn)
    try:
        handle = pool.submit(request, priority=priority, idempotency_key=key, deadline_s=deadline_s)
    except GenpoolError as exc:
        assert isinstance(exc, ValidationError), type(exc)
        assert _snapshot(redis_conn) == before, "a rejected submit changed Redis"
        event("rejected")
        return
    event("accepted")
    job = Job.fetch(handle.id, connection=redis_conn, serializer=JSONSerializer)
    envelope = Envelope.model_validate(job.args[0])
    assert envelope.job_id == handle.id
    assert math.isfinite(envelope.deadline_s) and envelope.deadline_s > 0


@FUZZ
@given(batch=st.lists(near_valid_requests(), min_size=1, max_size=4))
def test_submit_many_is_all_or_nothing(pool: GenPool, redis_conn: fakeredis.FakeRedis,
                                       batch: list[dict[str, Any]]) -> None:
    redis_conn.flushall()
    try:
        handles = pool.submit_many(batch)
    except ValidationError:
        assert redis_conn.dbsize() == 0, "part of a rejected batch was enqueued"
        return
    queued = redis_conn.lrange("rq:queue:" + keys.queue_name("default"), 0, -1)
    assert [q.decode() for q in queued] == [h.id for h in handles]


# --- worker-side parsing -------------------------------------------------------------------------

ENVELOPE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([0, 2, "1"]),
    "job_id": st.text(alphabet="0123456789abcdef", min_size=31, max_size=33) | odd_text,
    "request": near_valid_requests(),
    "submitted_at": st.floats(allow_nan=True),
    "deadline_s": deadlines,
    "extra": json_values,
}


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    """A valid envelope around a near-valid request, with 0-2 envelope fields changed; or any JSON."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    envelope: dict[str, Any] = {"v": 1, "job_id": "0" * 32, "request": draw(near_valid_requests()), "deadline_s": 60}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(ENVELOPE_FIELDS)))
        if name in envelope and draw(st.booleans()):
            del envelope[name]
        else:
            envelope[name] = draw(_field(ENVELOPE_FIELDS[name]))
    return envelope


@FUZZ
@given(payload=envelopes())
def test_worker_parse_returns_an_envelope_or_fails_the_job_with_a_record(results_runtime, payload: Any) -> None:
    conn = results_runtime
    conn.flushall()
    try:
        envelope = tasks._parse(payload)
    except JobFailed as exc:
        assert exc.record.status == "failed"
        assert exc.record.error is not None and exc.record.error.type == "invalid_payload"
        assert exc.record.error.message.startswith("malformed job payload")
        assert conn.get(keys.result("unknown")) is not None  # no current RQ job in a unit test
        event("failed with a record")
        return
    event("parsed")
    assert isinstance(envelope, Envelope)


@FUZZ
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: JSONSerializer.dumps(v)))
def test_envelope_json_from_redis_raises_only_pydantic_errors(raw: bytes) -> None:
    with contextlib.suppress(pydantic.ValidationError):
        Envelope.model_validate_json(raw)


@FUZZ
@given(data=st.binary(max_size=200) | json_values.map(JSONSerializer.dumps)
       | st.just(JSONSerializer.dumps(["genpool.worker.tasks.generate", None, [{}], {}]))
       | st.tuples(odd_text | st.sampled_from(["os.system", "builtins.open", "genpool.worker.tasks.generate"]),
                   json_values, st.lists(json_values, max_size=3), json_values).map(JSONSerializer.dumps),
       compress=st.booleans())
def test_a_job_from_the_queue_resolves_only_genpools_entry_point(redis_conn: fakeredis.FakeRedis, data: bytes,
                                                                 compress: bool) -> None:
    job = GenpoolJob.create("genpool.worker.tasks.generate", args=[{}], connection=redis_conn, serializer=JSONSerializer)
    job.save()
    redis_conn.hset(job.key, "data", zlib.compress(data) if compress else data)
    fetched = GenpoolJob.fetch(job.id, connection=redis_conn, serializer=JSONSerializer)
    try:
        func = fetched.func
    except (RefusedJob, DeserializationError) as exc:
        event(type(exc).__name__)
        return
    event("resolved")
    assert func is tasks.generate
    assert len(fetched.args) == 1 and not fetched.kwargs
    assert fetched.success_callback is None and fetched.failure_callback is None
