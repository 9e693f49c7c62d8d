"""The simulator through the real google-genai SDK: text, JSON, images, streaming, models, auth, triggers."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import zlib
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from tests.conftest import SIM_TEST_KEY

pytestmark = pytest.mark.integration

TEXT_MODEL = "gemini-2.5-flash"
IMAGE_MODEL = "gemini-2.5-flash-image"


@pytest.fixture
def client(sim_url: str) -> genai.Client:
    return genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(base_url=sim_url, timeout=10_000))


def raw_request(url: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"x-goog-api-key": SIM_TEST_KEY, **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG after checking signature, IHDR CRC and that IDAT inflates to the right size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    ihdr = data[16:16 + length]
    assert kind == b"IHDR"
    assert struct.unpack(">I", data[16 + length:20 + length])[0] == zlib.crc32(kind + ihdr) & 0xFFFFFFFF
    width, height = struct.unpack(">II", ihdr[:8])
    idat_at = 20 + length
    idat_len, idat_kind = struct.unpack(">I4s", data[idat_at:idat_at + 8])
    assert idat_kind == b"IDAT"
    raw = zlib.decompress(data[idat_at + 8:idat_at + 8 + idat_len])
    assert len(raw) == height * (1 + 3 * width)
    return width, height


def test_text_answer_is_deterministic_and_echoes_prompt(client: genai.Client) -> None:
    first = client.models.generate_content(model=TEXT_MODEL, contents="What is the capital of France?")
    second = client.models.generate_content(model=f"models/{TEXT_MODEL}", contents="What is the capital of France?")
    assert first.text == second.text
    assert first.text is not None and first.text.startswith(f"[{TEXT_MODEL}] echo: What is the capital of France?")
    assert first.candidates[0].finish_reason == types.FinishReason.STOP
    assert first.model_version == TEXT_MODEL
    assert first.response_id != second.response_id
    usage = first.usage_metadata
    assert usage.prompt_token_count == -(-len("What is the capital of France?") // 4)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_multi_turn_with_system_instruction(client: genai.Client) -> None:
    contents = [types.Content(role="user", parts=[types.Part(text="first question")]),
                types.Content(role="model", parts=[types.Part(text="first answer")]),
                types.Content(role="user", parts=[types.Part(text="second question")])]
    response = client.models.generate_content(
        model=TEXT_MODEL, contents=contents, config=types.GenerateContentConfig(system_instruction="be brief"))
    assert "echo: second question" in (response.text or "")
    chars = len("be brief") + len("first question") + len("first answer") + len("second question")
    assert response.usage_metadata.prompt_token_count == -(-chars // 4)


def test_chat_session(client: genai.Client) -> None:
    chat = client.chats.create(model=TEXT_MODEL)
    chat.send_message("hello there")
    reply = chat.send_message("and again")
    assert "echo: and again" in (reply.text or "")


class Recipe(BaseModel):
    name: str
    servings: int
    ingredients: list[str]


def test_json_with_response_schema(client: genai.Client) -> None:
    response = client.models.generate_content(
        model=TEXT_MODEL, contents="a soup recipe",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Recipe))
    assert isinstance(response.parsed, Recipe)
    assert "a soup recipe" in response.parsed.name


def test_json_with_response_json_schema(client: genai.Client) -> None:
    schema = {"type": "object", "properties": {
        "day": {"type": "string", "format": "date"}, "mood": {"type": "string", "enum": ["calm", "busy"]},
        "score": {"type": "integer", "minimum": 3, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
        "required": ["day", "mood", "score", "tags"], "additionalProperties": False}
    response = client.models.generate_content(
        model=TEXT_MODEL, contents="plan my day",
        config={"response_mime_type": "application/json", "response_json_schema": schema})
    jsonschema.validate(json.loads(response.text or ""), schema, format_checker=jsonschema.FormatChecker())


def test_json_without_schema_contains_prompt(client: genai.Client) -> None:
    response = client.models.generate_content(
        model=TEXT_MODEL, contents="json please", config={"response_mime_type": "application/json"})
    assert json.loads(response.text or "")["prompt"] == "json please"


@pytest.mark.parametrize("ratio", ["1:1", "16:9", "9:16", "3:4", "21:9"])
def test_image_is_a_valid_png_with_the_right_aspect(client: genai.Client, ratio: str) -> None:
    response = client.models.generate_content(
        model=IMAGE_MODEL, contents="a red bicycle",
        config=types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio=ratio)))
    blobs = [p.inline_data for p in response.candidates[0].content.parts if p.inline_data]
    assert len(blobs) == 1 and blobs[0].mime_type == "image/png"
    width, height = png_size(blobs[0].data)
    ratio_w, ratio_h = (int(n) for n in ratio.split(":"))
    assert width * ratio_h == height * ratio_w


def test_image_modality_on_text_model_and_noimage_trigger(client: genai.Client) -> None:
    response = client.models.generate_content(
        model=TEXT_MODEL, contents="draw", config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"]))
    assert any(p.inline_data for p in response.candidates[0].content.parts)
    plain = client.models.generate_content(model=IMAGE_MODEL, contents="draw [[noimage]]")
    assert not any(p.inline_data for p in plain.candidates[0].content.parts)


def test_unknown_aspect_ratio_is_400(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=IMAGE_MODEL, contents="x",
                                       config={"image_config": {"aspect_ratio": "7:5"}})
    assert caught.value.code == 400


def test_streaming(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model=TEXT_MODEL, contents="tell me a long story now"))
    assert 2 <= len(chunks) <= 3
    text = "".join(c.text or "" for c in chunks)
    whole = client.models.generate_content(model=TEXT_MODEL, contents="tell me a long story now")
    assert text == whole.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count


def test_count_tokens(client: genai.Client) -> None:
    result = client.models.count_tokens(model=TEXT_MODEL, contents="x" * 41)
    assert result.total_tokens == 11


def test_models_list_and_get(client: genai.Client) -> None:
    names = [m.name for m in client.models.list(config={"page_size": 4})]
    assert f"models/{TEXT_MODEL}" in names and f"models/{IMAGE_MODEL}" in names
    assert "models/gemini-1.5-pro" not in names
    assert len(names) == len(set(names))
    model = client.models.get(model=TEXT_MODEL)
    assert model.name == f"models/{TEXT_MODEL}"
    assert model.input_token_limit and model.output_token_limit
    assert "generateContent" in (model.supported_actions or [])


@pytest.mark.parametrize("model", ["no-such-model", "gemini-1.5-pro"])
def test_unknown_and_retired_models_are_404(client: genai.Client, model: str) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=model, contents="x")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    assert f"models/{model} is not found for API version v1" in (caught.value.message or "")
    with pytest.raises(errors.ClientError):
        client.models.get(model=model)


def test_bad_key_is_400_api_key_invalid(sim_url: str) -> None:
    client = genai.Client(api_key="wrong-key-123", http_options=types.HttpOptions(base_url=sim_url, timeout=5000))
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    reasons = [d.get("reason") for d in caught.value.details["error"]["details"]]
    assert "API_KEY_INVALID" in reasons
    assert "wrong-key-123" not in json.dumps(caught.value.details)


def test_missing_key_is_403(sim_url: str) -> None:
    status, body = raw_request(sim_url, "POST", f"/v1beta/models/{TEXT_MODEL}:generateContent",
                               json.dumps({"contents": [{"parts": [{"text": "x"}]}]}).encode(),
                               headers={"x-goog-api-key": ""})
    assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")


def test_key_in_query_string(sim_url: str) -> None:
    status, body = raw_request(sim_url, "POST", f"/v1beta/models/{TEXT_MODEL}:generateContent?key={SIM_TEST_KEY}",
                               json.dumps({"contents": [{"parts": [{"text": "q"}]}]}).encode(),
                               headers={"x-goog-api-key": ""})
    assert status == 200 and "echo: q" in body["candidates"][0]["content"]["parts"][0]["text"]


@pytest.mark.parametrize(("path", "body", "status"), [
    (f"/v1/models/{TEXT_MODEL}:generateContent", b"{not json", 400),
    (f"/v1/models/{TEXT_MODEL}:generateContent", b"[]", 400),
    (f"/v1/models/{TEXT_MODEL}:generateContent", b'{"contents": 5}', 400),
    (f"/v1/models/{TEXT_MODEL}:generateContent", b'{"contents": [{"parts": [{"text": ["a"]}]}]}', 400),
    (f"/v1/models/{TEXT_MODEL}:generateContent", b'{"generationConfig": {}}', 400),
    (f"/v1/models/{TEXT_MODEL}:generateContent", b"\xff\xfe", 400),
    (f"/v1/models/{TEXT_MODEL}:fly", b"{}", 404),
    ("/nothing/here", b"{}", 404),
    ("/_sim/nothing", b"{}", 404),
])
def test_malformed_requests_get_google_shaped_4xx(sim_url: str, path: str, body: bytes, status: int) -> None:
    got, payload = raw_request(sim_url, "POST", path, body, headers={"Content-Type": "application/json"})
    assert got == status
    assert payload["error"]["code"] == status and payload["error"]["message"]
    assert raw_request(sim_url, "GET", "/_sim/health")[0] == 200  # still alive


def test_bad_content_length_is_400(sim_url: str) -> None:
    parts = urlsplit(sim_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.putrequest("POST", f"/v1/models/{TEXT_MODEL}:generateContent")
    conn.putheader("Content-Length", "abc")
    conn.endheaders()
    assert conn.getresponse().status == 400
    conn.close()


def test_blocked_prompt(client: genai.Client) -> None:
    response = client.models.generate_content(model=TEXT_MODEL, contents="please [[block]] this")
    assert not response.candidates
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY


@pytest.mark.parametrize(("trigger", "reason"), [("[[safety]]", types.FinishReason.SAFETY),
                                                 ("[[recitation]]", types.FinishReason.RECITATION)])
def test_finish_reason_triggers(client: genai.Client, trigger: str, reason: types.FinishReason) -> None:
    response = client.models.generate_content(model=TEXT_MODEL, contents=f"say {trigger}")
    assert response.candidates[0].finish_reason == reason
    assert response.text is None


def test_max_tokens_trigger_and_config(client: genai.Client) -> None:
    triggered = client.models.generate_content(model=TEXT_MODEL, contents="go [[max_tokens]] on")
    assert triggered.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS and triggered.text
    limited = client.models.generate_content(model=TEXT_MODEL, contents="a long answer please",
                                             config=types.GenerateContentConfig(max_output_tokens=3))
    assert limited.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert limited.text is not None and len(limited.text) == 12


def test_stop_sequences(client: genai.Client) -> None:
    response = client.models.generate_content(model=TEXT_MODEL, contents="alpha STOPHERE omega",
                                              config=types.GenerateContentConfig(stop_sequences=["STOPHERE"]))
    assert response.text == f"[{TEXT_MODEL}] echo: alpha "


def test_garbage_http_gets_a_json_error(sim_url: str) -> None:
    parts = urlsplit(sim_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        reply = sock.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["error"]["code"] == 400
    assert raw_request(sim_url, "GET", "/_sim/health")[0] == 200
