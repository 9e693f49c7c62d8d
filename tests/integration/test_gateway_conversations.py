"""/v1/conversations over HTTP and the chat WebSocket, against uvicorn with the real stack behind it:
bounded waits, history and structured state, typing / chunks / message, restart after a broken stream,
bad inputs that keep the socket open, and two concurrent senders whose turns do not interleave."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from websockets.exceptions import ConnectionClosed

from genpool.shared import keys
from tests.conftest import Stack
from tests.integration.gatewaykit import Api, make_token, running_gateway, turn

pytestmark = pytest.mark.integration
HEAD, SECOND = "gemini-3.8-flash", "gemini-3.5-flash"
SCHEMA = {"type": "object", "properties": {"reply": {"type": "string"},
                                           "state": {"type": "object", "properties": {"step": {"type": "integer"}},
                                                     "required": ["step"]}},
          "required": ["reply", "state"]}


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    stack.workers.start(count=1, concurrency=8)
    with running_gateway(stack) as server:
        client = Api(server.url, make_token(stack.env["REDIS_URL"], "acme"))
        yield client
        client.close()


def stored_text(stack: Stack, api: Api, job_id: str) -> str:
    record = api.http.get(f"/v1/jobs/{job_id}").json()
    return str(stack.s3.get_object(Bucket=stack.bucket, Key=record["storage"]["key"])["Body"].read().decode())


def test_a_message_is_answered_within_the_wait_and_kept_in_the_history(api: Api) -> None:
    reply = api.http.post("/v1/conversations/trip-1/messages", json={"message": "Plan a day in Lisbon"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "finished" and body["conversation_id"] == "trip-1"
    assert body["reply"]["model_used"] == HEAD and "Plan a day in Lisbon" in body["reply"]["text"]
    assert body["reply"]["cost_usd"] > 0 and body["state"] is None
    second = api.http.post("/v1/conversations/trip-1/messages", json={"message": "And the evening?"}).json()
    history = api.http.get("/v1/conversations/trip-1").json()
    assert [(t["role"], t["text"]) for t in history["turns"]] == [
        ("user", "Plan a day in Lisbon"), ("model", body["reply"]["text"]),
        ("user", "And the evening?"), ("model", second["reply"]["text"])]
    assert history["turn_in_progress"] is None
    assert api.http.get(f"/v1/jobs/{second['job_id']}").json()["conversation_id"] == "trip-1"


def test_a_message_not_answered_within_the_wait_is_202_and_lands_later(api: Api, stack: Stack) -> None:
    stack.sim.models({HEAD: {"latency_ms": 1500, "jitter_ms": 0}})
    reply = api.http.post("/v1/conversations/slow-1/messages", json={"message": "take your time", "wait_s": 0.2})
    assert reply.status_code == 202
    job_id = reply.json()["job_id"]
    assert reply.headers["location"] == f"/v1/jobs/{job_id}" and reply.json()["status"] in ("queued", "started")
    assert api.http.get("/v1/conversations/slow-1").json()["turn_in_progress"] == job_id
    assert api.wait(job_id)["status"] == "finished"
    assert len(api.http.get("/v1/conversations/slow-1").json()["turns"]) == 2


def test_a_structured_conversation_keeps_its_latest_state(api: Api) -> None:
    first = api.http.post("/v1/conversations/form-1/messages", json={"message": "start", "json_schema": SCHEMA}).json()
    parsed = json.loads(first["reply"]["text"])
    assert set(parsed) == {"reply", "state"} and first["state"] == parsed
    second = api.http.post("/v1/conversations/form-1/messages", json={"message": "next", "json_schema": SCHEMA}).json()
    conversation = api.http.get("/v1/conversations/form-1").json()
    assert conversation["state"] == json.loads(second["reply"]["text"]) == second["state"]
    assert json.loads(conversation["turns"][1]["text"]) == parsed  # the model sees its own JSON next turn


def test_the_socket_sends_typing_chunks_message_and_the_chunks_join_to_the_stored_answer(api: Api,
                                                                                        stack: Stack) -> None:
    stack.sim.models({HEAD: {"latency_ms": 400, "jitter_ms": 0}})
    with api.socket("ws-1") as ws:
        events = turn(ws, "Tell me about streams", ref="m1")
    kinds = [e["type"] for e in events]
    chunks = kinds.count("chunk")
    assert chunks >= 2 and kinds == ["typing"] + ["chunk"] * chunks + ["message", "typing"]
    assert events[0] == {"type": "typing", "on": True, "job_id": events[0]["job_id"], "ref": "m1"}
    final = events[-2]
    assert final["model_used"] == HEAD and final["ref"] == "m1" and final["output_tokens"] > 0
    assert final["cost_usd"] > 0 and {e["model"] for e in events if e["type"] == "chunk"} == {HEAD}
    joined = "".join(e["text"] for e in events if e["type"] == "chunk")
    assert joined == final["text"] == stored_text(stack, api, final["job_id"])
    assert events[-1]["on"] is False


def test_the_socket_restarts_the_text_when_a_stream_breaks_and_another_model_answers(api: Api,
                                                                                     stack: Stack) -> None:
    stack.sim.faults([{"kind": "cut", "model": HEAD}])
    with api.socket("ws-2") as ws:
        events = turn(ws, "a long question " * 10)
    kinds = [e["type"] for e in events]
    assert kinds.index("chunk") < kinds.index("restart") < kinds.index("fallback")
    last_restart = max(i for i, k in enumerate(kinds) if k == "restart")
    after = "".join(e["text"] for e in events[last_restart:] if e["type"] == "chunk")
    final = events[-2]
    assert final["type"] == "message" and final["model_used"] == SECOND
    assert after == final["text"] == stored_text(stack, api, final["job_id"])


def test_a_browser_style_socket_authenticates_with_subprotocols(api: Api) -> None:
    with api.socket("ws-3", additional_headers={}, subprotocols=["genpool.v1", f"bearer.{api.token}"]) as ws:
        assert ws.subprotocol == "genpool.v1"
        ws.send(json.dumps({"type": "ping", "ref": 7}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "pong", "ref": 7}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gpk_" + "z" * 43}])
def test_a_socket_without_a_valid_token_gets_an_error_and_is_closed(api: Api, headers: dict[str, str]) -> None:
    with api.socket("ws-4", additional_headers=headers) as ws:
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize(("raw", "code", "words"), [
    ("not json", "invalid_request", "not JSON"),
    ("[1, 2]", "invalid_request", "send a JSON object"),
    ('{"type": "dance"}', "invalid_request", "'dance' is not one of message, ping"),
    ('{"type": "message"}', "invalid_request", "message: Field required"),
    ('{"type": "message", "message": "hi", "colour": "red"}', "invalid_request", "colour: Extra inputs"),
    ('{"type": "message", "message": "' + "x" * 70_000 + '"}', "invalid_request", "larger than 65536 bytes"),
    ('{"type": "message", "message": "hi", "model": "gemini-0-imaginary"}', "invalid_request", "not in the catalog"),
    (b'{"type": "message", "message": "binary"}', "invalid_request", "send text frames"),
])
def test_a_bad_message_is_one_error_and_the_socket_stays_usable(api: Api, stack: Stack, raw: str | bytes, code: str,
                                                                words: str) -> None:
    with api.socket("ws-5") as ws:
        ws.send(raw)
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["code"] == code and words in error["message"], error
        assert "\n" not in error["message"]
        events = turn(ws, "still there?")
        assert events[-2]["type"] == "message"
    assert stack.redis.llen(keys.conversation("acme:ws-5")) == 2  # only the good message became turns


def test_a_socket_over_its_rate_gets_429_style_errors_and_stays_open(stack: Stack) -> None:
    stack.workers.start(count=1, concurrency=4)
    with running_gateway(stack) as server:
        api = Api(server.url, make_token(stack.env["REDIS_URL"], "tight", rpm=2))
        with api.socket("ws-6") as ws:  # connecting counts as one request
            assert turn(ws, "first")[-2]["type"] == "message"
            limited = turn(ws, "second")
            assert limited[-1]["type"] == "error" and limited[-1]["code"] == "rate_limited"
            assert limited[-1]["retry_after_s"] >= 1
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "pong"
        api.close()


def test_conversations_belong_to_their_token(api: Api, stack: Stack) -> None:
    api.http.post("/v1/conversations/shared-name/messages", json={"message": "alice's secret"})
    other = Api(api.url, make_token(stack.env["REDIS_URL"], "bob"))
    assert other.http.get("/v1/conversations/shared-name").status_code == 404
    other.http.post("/v1/conversations/shared-name/messages", json={"message": "bob's turn"})
    turns = other.http.get("/v1/conversations/shared-name").json()["turns"]
    assert [t["text"] for t in turns if t["role"] == "user"] == ["bob's turn"]
    other.close()


def test_bad_conversation_ids_and_bodies_are_one_line_errors(api: Api) -> None:
    for path, body, words in (("/v1/conversations/bad id!/messages", {"message": "x"}, "conversation_id"),
                              ("/v1/conversations/c1/messages", {"message": ""}, "message: String should have"),
                              ("/v1/conversations/c1/messages", {"text": "x"}, "message: Field required")):
        reply = api.http.post(path, json=body)
        assert reply.status_code == 400 and words in reply.json()["message"], reply.text
    assert api.http.get("/v1/conversations/never-used").status_code == 404


def send_in_thread(api: Api, conversation: str, message: str, out: dict[str, Any]) -> threading.Thread:
    def send() -> None:
        with httpx2.Client(base_url=api.url, timeout=120, headers={"Authorization": f"Bearer {api.token}"}) as http:
            out[message] = http.post(f"/v1/conversations/{conversation}/messages", json={"message": message}).json()

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_two_concurrent_senders_on_one_conversation_do_not_interleave(api: Api, stack: Stack) -> None:
    """Without the turn held across the job, both jobs read the empty history at once: neither answer
    would have seen the other's turn, and both prompts would be just their own message."""
    stack.workers.start(count=1, concurrency=8)  # two workers, 16 threads: the jobs could run side by side
    stack.sim.models({HEAD: {"latency_ms": 800, "jitter_ms": 0}})
    out: dict[str, Any] = {}
    messages = ["first sender says hello", "second sender says hi"]
    for thread in [send_in_thread(api, "duel", m, out) for m in messages]:
        thread.join(timeout=120)
    assert {out[m]["status"] for m in messages} == {"finished"}
    records = sorted((api.http.get(f"/v1/jobs/{out[m]['job_id']}").json() for m in messages),
                     key=lambda r: r["finished_at"])
    turns = [(t["role"], t["text"]) for t in api.http.get("/v1/conversations/duel").json()["turns"]]
    assert [r for r, _ in turns] == ["user", "model", "user", "model"]
    first_user, first_model, second_user, _ = (text for _, text in turns)
    # the later job's prompt held the whole first exchange (the simulator counts ceil(chars / 4))
    assert records[1]["prompt_tokens"] == math.ceil(len(first_user + first_model + second_user) / 4)
    assert records[0]["prompt_tokens"] == math.ceil(len(first_user) / 4)
    events = [api.events(r["id"]) for r in records]
    finished_first = next(e["id"] for e in events[0] if e["event"] == "finished")
    started_second = next(e["id"] for e in events[1] if e["event"] == "started")
    assert tuple(map(int, started_second.split("-"))) > tuple(map(int, finished_first.split("-")))
