"""Security, end to end with real workers, redis-server, S3 server and the simulator:

* the API key never leaks: jobs of every kind (finishing and failing, with a good and a wrong key) run
  with a recognisable key, then worker logs (text and JSON), every Redis key and value and every S3
  object body, tag and metadata are scanned for it;
* the queue runs no code: a pickled job, or a JSON job naming another function, is refused without
  running anything (each payload would create a file), and the worker keeps going;
* malformed jobs written straight into Redis fail with a clear genpool record;
* S3 keys are genpool's own, whatever idempotency keys or conversation ids a client sends.
"""

from __future__ import annotations

import json
import re
import time
import uuid
import zlib
from pathlib import Path

import pytest
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from genpool.devstack import services
from genpool.devstack.stack import WorkerGroup, stack_env
from genpool.shared import keys
from genpool.shared.errors import ValidationError
from genpool.shared.storage import unpack_metadata
from tests.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CANARY = "AIzaCANARY-" + uuid.uuid4().hex  # shaped like a Gemini key, unique to this run
WRONG_CANARY = "AIzaWRONGKEY-" + uuid.uuid4().hex
REDIS_CANARY = "redis-pw-" + uuid.uuid4().hex  # the password of a least-privilege Redis ACL user
REDIS_ACL = ["~genpool:*", "~rq:*", "&rq:*", "+@all", "-@admin", "-@dangerous", "+config|get", "+info"]
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
OBJECT_KEY = re.compile(r"^genpool/(text|chat|json|image)/[0-9a-f]{2}/[0-9a-f]{32}\.(txt|json|png)$")
QUEUE = keys.queue_name("default")


def _jobs() -> list[dict]:
    """Every kind, finishing and failing (blocked, truncated, no image, a 400 on a pinned model)."""
    return [
        {"kind": "text", "prompt": "plain text"},
        {"kind": "text", "prompt": "please [[block]] this", "allow_fallback": False},
        {"kind": "chat", "messages": [{"role": "user", "text": "hello"}]},
        {"kind": "chat", "conversation_id": "conv-1", "message": "first turn"},
        {"kind": "json", "prompt": "a title", "json_schema": SCHEMA},
        {"kind": "json", "prompt": "cut [[max_tokens]]", "json_schema": SCHEMA, "allow_fallback": False},
        {"kind": "image", "prompt": "a lighthouse", "aspect_ratio": "16:9"},
        {"kind": "image", "prompt": "words only [[noimage]]"},
        {"kind": "text", "prompt": "pinned to a failing model", "model": "gemini-3.1-flash-lite",
         "allow_fallback": False},
    ]


@pytest.fixture
def canary_stack(real_redis, redis_url, s3_service, tmp_path):
    """A stack whose own simulator accepts only the canary key, and whose producer and workers log in to
    Redis as a least-privilege ACL user with a canary password (RELIABILITY.md's ACL)."""
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"api_keys": [CANARY, WRONG_CANARY], "defaults": {"latency_ms": 5, "jitter_ms": 2}}))
    sim = services.start_sim(config, workdir=tmp_path / "sim")
    real_redis.execute_command("ACL", "SETUSER", "genpool", "reset", "on", f">{REDIS_CANARY}", *REDIS_ACL)
    real_redis.execute_command("ACL", "LOG", "RESET")
    acl_url = redis_url.replace("redis://", f"redis://genpool:{REDIS_CANARY}@", 1)
    env = stack_env(acl_url, s3_service.url, sim.url, CANARY, tmp_path, bucket=f"t-{uuid.uuid4().hex[:12]}",
                    GENPOOL_LOG_LEVEL="DEBUG")
    st = Stack(env, tmp_path, sim.url)
    groups: list[WorkerGroup] = []
    yield st, groups
    for group in groups:
        group.stop()
    st.pool.connection.close()
    sim.stop()
    real_redis.execute_command("ACL", "DELUSER", "genpool")


def _group(stack: Stack, name: str, **env: str) -> WorkerGroup:
    workdir = stack.workdir / name
    workdir.mkdir()
    return WorkerGroup({**stack.env, **env}, workdir)


def _run(stack: Stack, group: WorkerGroup, revoke: bool = False) -> list:
    """The jobs through the group's worker; ``revoke``: the simulator stops accepting the group's key once
    the worker has started (it checks its key at start and would refuse a wrong one)."""
    group.start(1, concurrency=4)
    if revoke:
        from rq import Worker

        deadline = time.monotonic() + 30
        while Worker.count(connection=stack.redis) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        stack.sim.call("keys", {"api_keys": [CANARY]})
    handles = [stack.pool.submit(job) for job in _jobs()]
    records = [h.wait(timeout_s=60) for h in handles]
    group.stop()
    return records


def _inflated(values: list[bytes]) -> list[bytes]:
    """The values plus, for those RQ stores zlib-compressed (job payloads), their decompressed form."""
    out = list(values)
    for value in values:
        try:
            out.append(zlib.decompress(value))
        except zlib.error:
            continue
    return out


def _redis_dump(conn) -> list[bytes]:
    """Every key name and every value of every type."""
    out: list[bytes] = []
    for key in conn.scan_iter(count=500):
        out.append(key)
        kind = conn.type(key).decode()
        if kind == "string":
            out.append(conn.get(key))
        elif kind == "hash":
            out.extend(b for kv in conn.hgetall(key).items() for b in kv)
        elif kind == "list":
            out.extend(conn.lrange(key, 0, -1))
        elif kind == "set":
            out.extend(conn.smembers(key))
        elif kind == "zset":
            out.extend(m for m, _ in conn.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            out.extend(b for _, fields in conn.xrange(key) for kv in fields.items() for b in kv)
    return _inflated(out)


def _s3_dump(stack: Stack) -> list[str]:
    out = []
    for key in stack.objects():
        out.append(key)
        obj = stack.s3.get_object(Bucket=stack.bucket, Key=key)
        out.append(obj["Body"].read().decode("latin-1"))
        out.append(json.dumps(unpack_metadata(obj.get("Metadata", {}))))  # packed URL-encoded: read it decoded
        out.append(json.dumps(stack.tags(key)))
    return out


def _hits(texts: list[str], secret: str) -> int:
    probes = (secret, secret[-12:])  # the whole key, and its tail as a partly masked key would show it
    return sum(1 for text in texts for p in probes if p in text)


def test_api_key_never_leaks_to_logs_redis_or_s3(canary_stack, real_redis):
    stack, groups = canary_stack
    stack.sim.faults([{"kind": "400", "model": "gemini-3.1-flash-lite"},
                      {"kind": "503", "model": "gemini-3.8-flash", "rate": 0.3}])
    groups += [_group(stack, "text"), _group(stack, "json", GENPOOL_LOG_FORMAT="json", GENPOOL_LOG_LEVEL="INFO"),
               _group(stack, "wrong", GEMINI_API_KEY=WRONG_CANARY)]
    records = _run(stack, groups[0]) + _run(stack, groups[1])
    wrong = _run(stack, groups[2], revoke=True)
    refused = _group(stack, "refused", GEMINI_API_KEY=WRONG_CANARY)  # now a wrong key at start: one line
    refused.start(1, concurrency=1)
    assert refused.procs[0].wait(timeout=60) == 2
    groups.append(refused)

    statuses = {r.status for r in records}
    assert statuses == {"finished", "failed"}, "the run must include finished and failed jobs"
    assert {r.kind for r in records if r.status == "finished"} == {"text", "chat", "json", "image"}
    assert all(r.status == "failed" and r.error.type in ("auth", "all_models_failed") for r in wrong)
    assert any("API key not valid" in r.error.message for r in wrong)

    logs = [group.logs() for group in groups]
    assert all(logs) and any(line.startswith("{") for line in logs[1].splitlines())
    redis_values = [b.decode("latin-1") for b in _redis_dump(real_redis)]  # as the admin: every key
    s3_values = _s3_dump(stack)
    assert len(s3_values) >= 4 * 4
    print(f"\nleak scan: {len(records) + len(wrong)} jobs, {sum(len(t.splitlines()) for t in logs)} log lines, "
          f"{len(redis_values)} Redis names/values, {len(s3_values) // 4} S3 objects; "
          f"{sum(r.status == 'failed' for r in records + wrong)} failed jobs")
    assert real_redis.execute_command("ACL", "LOG") == [], "the least-privilege Redis user was denied something"
    for secret in (CANARY, WRONG_CANARY, REDIS_CANARY):
        assert _hits(logs, secret) == 0, "API key in worker logs"
        assert _hits(redis_values, secret) == 0, "API key in Redis"
        assert _hits(s3_values, secret) == 0, "API key in S3"
    # The scan can find what is there: the prompts, stored in compressed job payloads, show up.
    assert _hits(redis_values, "pinned to a failing model") > 0


class _CreatesFile:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _raw_job(stack: Stack, data: bytes) -> str:
    """A job whose stored payload is exactly ``data``, pushed on a genpool queue."""
    queue = Queue(QUEUE, connection=stack.redis, serializer=JSONSerializer)
    job = queue.enqueue_call("genpool.worker.tasks.generate", args=[{}], job_id=uuid.uuid4().hex)
    stack.redis.hset(job.key, "data", data)
    return job.id


def _malformed(stack: Stack, marker: Path) -> dict[str, str]:
    """name → job id, each written straight into Redis."""
    json_queue = Queue(QUEUE, connection=stack.redis, serializer=JSONSerializer)
    pickle_queue = Queue(QUEUE, connection=stack.redis)  # RQ's default serializer: pickle
    good = {"v": 1, "job_id": uuid.uuid4().hex, "request": {"kind": "text", "prompt": "hi"}}

    def envelope(rq_options: dict | None = None, **changes) -> str:
        job_id = uuid.uuid4().hex
        body = {**good, "job_id": job_id, **changes}
        return json_queue.enqueue_call("genpool.worker.tasks.generate", args=[body], job_id=job_id, **(rq_options or {})).id

    return {
        "pickle": pickle_queue.enqueue_call("genpool.worker.tasks.generate", args=[_CreatesFile(marker)]).id,
        "other_function": json_queue.enqueue_call("builtins.open", args=[str(marker), "w"]).id,
        "callback": envelope({"on_success": Callback("os.abort")}),
        "no_args": json_queue.enqueue_call("genpool.worker.tasks.generate", args=[]).id,
        "extra_kwargs": json_queue.enqueue_call("genpool.worker.tasks.generate", args=[good], kwargs={"x": 1}).id,
        "bad_json": _raw_job(stack, zlib.compress(b'["genpool.worker.tasks.generate", null, [{"v": 1')),
        "wrong_shape": _raw_job(stack, zlib.compress(b'{"func": "genpool.worker.tasks.generate"}')),
        "not_an_object": envelope(request="just a string"),
        "unknown_kind": envelope(request={"kind": "video", "prompt": "hi"}),
        "missing_fields": envelope(request={"kind": "json", "prompt": "no schema"}),
        "huge": envelope(request={"kind": "text", "prompt": "h" * 3_000_000}),
        "bad_version": envelope(v=99),
    }


def test_pickled_or_foreign_jobs_are_refused_and_the_worker_keeps_going(stack, tmp_path):
    marker = tmp_path / "code-ran"
    jobs = _malformed(stack, marker)
    stack.workers.start(1, concurrency=4)
    records = {name: stack.pool.handle(job_id).wait(timeout_s=60) for name, job_id in jobs.items()}
    good = stack.pool.submit({"kind": "text", "prompt": "a good job after the bad ones"}).wait(timeout_s=60)

    assert not marker.exists(), "a job from the queue ran code"
    assert good.status == "finished"
    assert stack.workers.procs[0].poll() is None
    assert records.pop("callback").status == "finished"
    for name, record in records.items():
        assert record.status == "failed", name
        assert record.error.message, name
    refused = {"pickle", "other_function", "no_args", "extra_kwargs", "bad_json", "wrong_shape"}
    assert {n for n, r in records.items() if r.error.type == "refused_job"} == refused
    assert "builtins.open" in records["other_function"].error.message
    assert {r.error.type for n, r in records.items() if n not in refused} == {"invalid_payload"}
    assert "malformed job payload" in records["unknown_kind"].error.message
    # A job naming a callback ran, but its callback was never imported or called: had os.abort been
    # called, RQ would have failed the job (wrong arguments) or the worker would have died.
    callback_job = Job.fetch(jobs["callback"], connection=stack.redis, serializer=JSONSerializer)
    assert callback_job.get_status() == JobStatus.FINISHED
    assert "Traceback" not in records["pickle"].error.message


def test_object_keys_are_built_by_genpool_never_from_client_text(stack):
    stack.workers.start(1, concurrency=4)
    sneaky = ["../../../etc/passwd", "..%2f..%2fx", "/abs/path", "a\\..\\b", "genpool/text/00/" + "0" * 32 + ".txt"]
    handles = [stack.pool.submit({"kind": "text", "prompt": f"idem {k}"}, idempotency_key=k) for k in sneaky]
    for conv in ("../x", "a/../../b", "/etc", "x" * 200, ".hidden"):
        with pytest.raises(ValidationError, match="conversation_id"):
            stack.pool.submit({"kind": "chat", "conversation_id": conv, "message": "hi"})
    handles.append(stack.pool.submit({"kind": "chat", "conversation_id": "a..b:c", "message": "hi"}))
    records = [h.wait(timeout_s=60) for h in handles]

    assert all(r.status == "finished" for r in records), [r.error for r in records]
    object_keys = stack.objects()
    assert len(object_keys) == len(records)
    assert all(OBJECT_KEY.match(k) for k in object_keys), object_keys
    assert {r.storage.key for r in records} == set(object_keys)
    redis_keys = [k.decode() for k in stack.redis.scan_iter(count=500)]
    assert not [k for k in redis_keys for s in sneaky if s in k], "a client's idempotency key became a Redis key"
