"""The plain-client path of worker/gemini.py (#17: no per-call config for a call that carries only the
default safety settings and its model's timeout): the request on the wire is the one the config path sends.
The HTTP transport is replaced, so the real SDK builds and sends the requests."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from genpool.shared.jobs import parse_request
from genpool.shared.settings import Settings
from genpool.worker.gemini import GeminiGateway

ANSWER = {"candidates": [{"content": {"role": "model", "parts": [{"text": "a poem"}]}, "finishReason": "STOP"}],
          "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}, "modelVersion": "m-001"}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[httpx2.Request]:
    requests: list[httpx2.Request] = []

    def handle(self: Any, request: httpx2.Request) -> httpx2.Response:
        request.read()
        requests.append(request)
        return httpx2.Response(200, json=ANSWER, request=request)

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", handle)
    return requests


def _gateway() -> GeminiGateway:
    settings = Settings.from_env({"GEMINI_API_KEY": "k", "GEMINI_BASE_URL": "http://gemini.invalid"},
                                 dotenv_path=None)
    return GeminiGateway(settings, plain_timeouts_s=[30.0, 60.0])


def _body(request: httpx2.Request) -> dict[str, Any]:
    return dict(json.loads(request.content))


def test_a_default_call_sends_the_same_request_without_a_config(sent: list[httpx2.Request]) -> None:
    gateway = _gateway()
    call = gateway.build(parse_request({"kind": "text", "prompt": "Write a haiku"}))
    assert call.plain
    assert gateway.generate(call, "m", 30.0).text == "a poem"  # the plain client (its timeout is 30 s)
    assert gateway.generate(call, "m", 12.5).text == "a poem"  # cut short by a deadline: with a config
    plain, configured = sent
    assert plain.content == configured.content  # the same bytes
    assert [s["threshold"] for s in _body(plain)["safetySettings"]] == ["BLOCK_MEDIUM_AND_ABOVE"] * 4
    assert plain.url == configured.url
    assert plain.extensions["timeout"]["read"] == 30.0 and configured.extensions["timeout"]["read"] == 12.5


@pytest.mark.parametrize("request_data", [
    {"kind": "text", "prompt": "p", "generation": {"temperature": 0.2}},
    {"kind": "text", "prompt": "p", "system_instruction": "be brief"},
    {"kind": "text", "prompt": "p", "safety": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]},
    {"kind": "json", "prompt": "p", "json_schema": {"type": "object"}},
    {"kind": "image", "prompt": "p"},
])
def test_any_other_option_keeps_the_config(request_data: dict[str, Any]) -> None:
    assert not _gateway().build(parse_request(request_data)).plain
