"""/v1/jobs through a real HTTP client against uvicorn, with redis-server, the S3 server, the simulator
and worker processes behind it: submit, record, output, SSE events, idempotency, batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Stack
from tests.integration.gatewaykit import Api, make_token, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    stack.workers.start(count=1, concurrency=8)
    with running_gateway(stack) as server:
        client = Api(server.url, make_token(stack.env["REDIS_URL"], "acme"))
        yield client
        client.close()


def test_a_text_job_from_submit_to_record_output_and_events(api: Api, stack: Stack) -> None:
    reply = api.submit({"kind": "text", "prompt": "Write a haiku about queues"})
    assert reply.status_code == 202
    job_id = reply.json()["id"]
    assert reply.headers["location"] == f"/v1/jobs/{job_id}"
    events = api.events(job_id)
    assert [e["event"] for e in events] == ["queued", "started", "attempt", "finished"]
    record = api.http.get(f"/v1/jobs/{job_id}").json()
    assert record["status"] == "finished" and record["account"] == "acme"
    output = api.http.get(f"/v1/jobs/{job_id}/output")
    assert output.status_code == 200 and output.headers["content-type"].startswith("text/plain")
    stored = stack.s3.get_object(Bucket=stack.bucket, Key=record["storage"]["key"])["Body"].read()
    assert output.content == stored and b"Write a haiku about queues" in stored
