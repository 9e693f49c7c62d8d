"""/v1/jobs through a real HTTP client against uvicorn, with redis-server, the S3 server, the simulator
and worker processes behind it: submit, record, output, SSE events (order, fallback, streaming, restart,
resume), idempotency, batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from rq import Queue

from genpool.shared import keys
from tests.conftest import Stack
from tests.integration.gatewaykit import Api, make_token, running_gateway

pytestmark = pytest.mark.integration
HEAD, SECOND = "gemini-3.8-flash", "gemini-3.5-flash"  # the default text chain's first two models


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    stack.workers.start(count=1, concurrency=8)
    with running_gateway(stack) as server:
        client = Api(server.url, make_token(stack.env["REDIS_URL"], "acme"))
        yield client
        client.close()


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def joined_after_last_restart(events: list[dict[str, Any]]) -> str:
    last = max((i for i, e in enumerate(events) if e["event"] == "restart"), default=-1)
    return "".join(e["data"]["text"] for e in events[last + 1:] if e["event"] == "chunk")


def test_a_text_job_from_submit_to_record_output_and_events(api: Api, stack: Stack) -> None:
    reply = api.submit({"kind": "text", "prompt": "Write a haiku about queues"})
    assert reply.status_code == 202
    job_id = reply.json()["id"]
    assert reply.headers["location"] == f"/v1/jobs/{job_id}"
    events = api.events(job_id)
    assert kinds(events) == ["queued", "started", "attempt", "finished"]
    assert events[2]["data"] | {"latency_s": 0} == {"model": HEAD, "attempt": 1, "outcome": "ok", "latency_s": 0}
    record = api.http.get(f"/v1/jobs/{job_id}").json()
    assert record["status"] == "finished" and record["account"] == "acme"
    assert events[-1]["data"]["cost_usd"] == record["cost_usd"] > 0
    output = api.http.get(f"/v1/jobs/{job_id}/output")
    assert output.status_code == 200 and output.headers["content-type"].startswith("text/plain")
    stored = stack.s3.get_object(Bucket=stack.bucket, Key=record["storage"]["key"])["Body"].read()
    assert output.content == stored and b"Write a haiku about queues" in stored


def test_a_list_is_one_job_each_with_the_right_content_types(api: Api) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    reply = api.submit([{"kind": "text", "prompt": "one"}, {"kind": "json", "prompt": "two", "json_schema": schema},
                        {"kind": "image", "prompt": "a lighthouse", "aspect_ratio": "16:9"}], params={"priority": "high"})
    assert reply.status_code == 202 and "location" not in reply.headers
    jobs = reply.json()["jobs"]
    assert [j["location"] for j in jobs] == [f"/v1/jobs/{j['id']}" for j in jobs]
    types = []
    for job in jobs:
        assert api.wait(job["id"])["status"] == "finished"
        output = api.http.get(f"/v1/jobs/{job['id']}/output")
        types.append(output.headers["content-type"].split(";")[0])
    assert types == ["text/plain", "application/json", "image/png"]
    assert json.loads(api.http.get(f"/v1/jobs/{jobs[1]['id']}/output").content)["answer"]


def test_the_same_idempotency_key_returns_the_same_job_and_pays_once(api: Api, stack: Stack) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = api.submit({"kind": "text", "prompt": "once"}, headers=headers).json()
    api.wait(first["id"])
    again = api.submit({"kind": "text", "prompt": "once"}, headers=headers).json()
    assert (again["id"], again["existing"], first["existing"]) == (first["id"], True, False)
    assert stack.sim.stats()["models"][HEAD]["requests"] == 1
    other = api.submit({"kind": "text", "prompt": "once"}, headers={"Idempotency-Key": "order-43"}).json()
    assert other["id"] != first["id"]


def test_a_fallback_is_visible_in_the_events_in_order(api: Api, stack: Stack) -> None:
    stack.sim.faults([{"kind": "503", "model": HEAD}])
    job_id = api.submit({"kind": "text", "prompt": "fall back please"}).json()["id"]
    events = api.events(job_id)
    names = kinds(events)
    assert names[:2] == ["queued", "started"] and names[-1] == "finished"
    fallback = names.index("fallback")
    head_attempts = [e["data"] for e in events[:fallback] if e["event"] == "attempt"]
    assert head_attempts and all(a == a | {"model": HEAD, "outcome": "server_error"} for a in head_attempts)
    assert events[fallback]["data"] == {"from": HEAD, "to": SECOND, "reason": "server_error"}
    assert [e["data"]["model"] for e in events[fallback:] if e["event"] == "attempt"] == [SECOND]
    assert events[-1]["data"]["model_used"] == SECOND == api.http.get(f"/v1/jobs/{job_id}").json()["model_used"]


def test_a_streamed_answers_chunks_join_to_the_stored_object(api: Api, stack: Stack) -> None:
    stack.sim.models({HEAD: {"latency_ms": 300, "jitter_ms": 0}})
    job_id = api.submit({"kind": "text", "prompt": "stream it", "stream": True}).json()["id"]
    events = api.events(job_id)
    chunks = kinds(events).count("chunk")
    assert chunks >= 2 and kinds(events) == ["queued", "started"] + ["chunk"] * chunks + ["attempt", "finished"]
    record = api.http.get(f"/v1/jobs/{job_id}").json()
    stored = stack.s3.get_object(Bucket=stack.bucket, Key=record["storage"]["key"])["Body"].read().decode()
    assert joined_after_last_restart(events) == stored
    # Last-Event-ID resumes after that event: the rest, and only the rest
    resumed = api.events(job_id, headers={"Last-Event-ID": events[2]["id"]})
    assert resumed == events[3:]


def test_a_fallback_after_partial_output_sends_restart_and_the_answer_is_whole(api: Api, stack: Stack) -> None:
    stack.sim.faults([{"kind": "cut", "model": HEAD}])  # the head model's stream breaks after its first chunk
    job_id = api.submit({"kind": "text", "prompt": "a long answer " * 20, "stream": True}).json()["id"]
    events = api.events(job_id)
    names = kinds(events)
    first_restart = names.index("restart")
    assert names[2:first_restart] == ["chunk", "attempt"]
    assert events[2]["data"]["model"] == HEAD and events[3]["data"]["outcome"] == "connection"
    assert events[first_restart]["data"] == {"model": HEAD, "reason": "connection"}
    assert names.index("fallback") > max(i for i, n in enumerate(names) if n == "restart")
    record = api.http.get(f"/v1/jobs/{job_id}").json()
    assert record["model_used"] == SECOND
    stored = stack.s3.get_object(Bucket=stack.bucket, Key=record["storage"]["key"])["Body"].read().decode()
    assert joined_after_last_restart(events) == stored and stored.startswith(f"[{SECOND}]")


def test_a_job_not_finished_has_a_status_and_no_output_yet(api: Api, stack: Stack) -> None:
    stack.sim.models({HEAD: {"latency_ms": 3000, "jitter_ms": 0}})
    job_id = api.submit({"kind": "text", "prompt": "slow"}).json()["id"]
    status = api.http.get(f"/v1/jobs/{job_id}").json()
    assert status["id"] == job_id and status["status"] in ("queued", "started")
    early = api.http.get(f"/v1/jobs/{job_id}/output")
    assert early.status_code == 409 and early.json()["code"] == "not_finished"
    api.wait(job_id)
    presigned = api.http.get(f"/v1/jobs/{job_id}/output", params={"presign": "true"}).json()
    assert presigned["expires_in_s"] == 300
    assert httpx2.get(presigned["url"], timeout=30).content == api.http.get(f"/v1/jobs/{job_id}/output").content


def test_a_failed_job_is_a_failed_record_with_no_output(api: Api) -> None:
    job_id = api.submit({"kind": "text", "prompt": "[[block]] this"}).json()["id"]
    events = api.events(job_id)
    assert events[-1]["event"] == "failed" and events[-1]["data"]["error"]["type"] == "blocked"
    assert api.http.get(f"/v1/jobs/{job_id}").json()["status"] == "failed"
    missing = api.http.get(f"/v1/jobs/{job_id}/output")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def queued(stack: Stack) -> int:
    return sum(Queue(keys.queue_name(p), connection=stack.redis).count for p in keys.PRIORITIES)


@pytest.mark.parametrize(("body", "expected"), [
    ({"kind": "text"}, "prompt: Field required"),
    ({"kind": "poem", "prompt": "x"}, "does not match any of the expected tags"),
    ({"kind": "json", "prompt": "x", "json_schema": {"type": "nope"}}, "json_schema: invalid json_schema"),
    ({"kind": "text", "prompt": "x", "model": "gemini-0-imaginary"}, "is not in the catalog"),
    ({"kind": "text", "prompt": "x", "temperature": 1}, "temperature: Extra inputs are not permitted"),
    ([], "the list is empty"),
    ([{"kind": "text", "prompt": "good"}, {"kind": "text", "prompt": ""}], "1.prompt: String should have at least"),
    ({"kind": "chat", "conversation_id": "c1", "message": "hi"}, "/v1/conversations/{id}/messages"),
    ("just text", "body: "),
])
def test_a_bad_request_is_one_line_that_names_the_field_and_enqueues_nothing(
        api: Api, stack: Stack, body: Any, expected: str) -> None:
    reply = api.submit(body)
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["code"] == "invalid_request" and expected in error["message"]
    assert "\n" not in error["message"] and set(error) == {"code", "message"}
    assert queued(stack) == 0 and not stack.redis.keys(keys.job_events("*"))


def test_bad_json_a_bad_priority_and_an_unknown_job(api: Api) -> None:
    bad = api.http.post("/v1/jobs", content=b'{"kind": "text",', headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json() == {"code": "invalid_request", "message": "the body is not valid JSON"}
    priority = api.submit({"kind": "text", "prompt": "x"}, params={"priority": "urgent"})
    assert priority.status_code == 400 and priority.json()["message"].startswith("query.priority: ")
    for path in ("/v1/jobs/" + "0" * 32, "/v1/jobs/" + "0" * 32 + "/events", "/v1/jobs/not-an-id"):
        reply = api.http.get(path)
        assert reply.status_code in (400, 404) and set(reply.json()) == {"code", "message"}, path


def test_the_body_and_the_batch_have_size_limits(stack: Stack) -> None:
    with running_gateway(stack, max_body_bytes=4096, max_batch=2) as server:
        api = Api(server.url, make_token(stack.env["REDIS_URL"], "acme"))
        big = api.submit({"kind": "text", "prompt": "x" * 5000})
        assert big.status_code == 413 and big.json()["code"] == "too_large"
        chunked = api.http.post("/v1/jobs", content=iter([b'{"kind": "text", "prompt": "', b"y" * 5000, b'"}']),
                                headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["code"] == "too_large"
        many = api.submit([{"kind": "text", "prompt": "x"}] * 3)
        assert many.status_code == 413 and "at most 2" in many.json()["message"]
        assert queued(stack) == 0
        api.close()


def test_a_job_that_ends_between_the_record_read_and_the_status_read_answers_with_its_record(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway reads the record, then (none yet) the status, which reads the record again: a job that
    ended in between (its end MULTI writes record and status at once) said "finished" with no record."""
    from genpool.gateway.context import Gateway
    from genpool.shared.jobs import ResultRecord

    with running_gateway(stack) as server:  # no worker: the job stays queued until the record is written
        api = Api(server.url, make_token(stack.env["REDIS_URL"], "acme"))
        job_id = api.submit({"kind": "text", "prompt": "ends mid-read"}).json()["id"]
        assert api.http.get(f"/v1/jobs/{job_id}").json() == {"id": job_id, "status": "queued"}
        ended = ResultRecord(id=job_id, status="finished", kind="text", model_used=HEAD, cost_usd=0.25,
                             account="acme")
        status = Gateway.status

        async def ends_now(self: Gateway, job_id_: str) -> str:  # the worker's end lands between the reads
            stack.redis.set(keys.result(job_id_), ended.model_dump_json())
            return await status(self, job_id_)

        monkeypatch.setattr(Gateway, "status", ends_now)
        body = api.http.get(f"/v1/jobs/{job_id}").json()
        api.close()
    assert body["status"] == "finished" and body["cost_usd"] == 0.25 and body["model_used"] == HEAD
