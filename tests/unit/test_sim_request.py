"""Request parsing and answer shaping, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from genpool.sim.answer import make_plan, render, response_body, stream_bodies
from genpool.sim.catalog import BUILTIN_DEFAULTS, resolve
from genpool.sim.config import Triggers
from genpool.sim.errors import ApiError
from genpool.sim.request import parse_generate, parse_json
from genpool.sim.textgen import shape

TEXT = resolve("gemini-2.5-flash", BUILTIN_DEFAULTS, {})


def _body(text: str, **config: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": config}


def test_snake_case_keys_and_url_safe_base64_are_accepted() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"},
                                                    {"inline_data": {"mime_type": "image/png", "data": "AP_-"}}]}],
            "system_instruction": {"parts": [{"text": "be brief"}]},
            "generation_config": {"max_output_tokens": 5, "stop_sequences": ["x"],
                                  "response_mime_type": "application/json", "image_config": {"aspect_ratio": "3:2"}}}
    request = parse_generate(body)
    assert (request.system_text, request.max_output_tokens, request.stop_sequences) == ("be brief", 5, ("x",))
    assert (request.mime_type, request.aspect_ratio, request.inline_parts) == ("application/json", "3:2", 1)


@pytest.mark.parametrize("body", [
    [], {}, {"contents": []}, {"contents": "hi"}, {"contents": [{"parts": [{"text": 3}]}]},
    {"contents": [{"role": "robot", "parts": [{"text": "x"}]}]},
    {"contents": [{"parts": [{"inlineData": {"data": "!!!", "mimeType": "image/png"}}]}]},
    _body("x", maxOutputTokens=0), _body("x", maxOutputTokens="9"), _body("x", stopSequences="x"),
    _body("x", responseModalities=["SMELL"]), _body("x", imageConfig={"aspectRatio": "7:3"}),
    {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": []},
])
def test_malformed_bodies_are_400(body: Any) -> None:
    with pytest.raises(ApiError) as caught:
        parse_generate(body)
    assert caught.value.code == 400


def test_bad_json_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(b"{nope")
    assert caught.value.code == 400


def test_answer_echoes_prompt_and_model_deterministically() -> None:
    plan = make_plan(TEXT, parse_generate(_body("What is 2+2?")), Triggers())
    first, second = render(plan), render(plan)
    assert first == second
    assert first.parts[0]["text"].startswith("[gemini-2.5-flash] echo: What is 2+2?")
    assert first.finish_reason == "STOP"


def test_stop_sequences_and_max_tokens_shape_text() -> None:
    assert shape("abc STOP def", ("STOP",), None).text == "abc "
    cut = shape("x" * 100, (), 5)
    assert (cut.text, cut.finish_reason) == ("x" * 20, "MAX_TOKENS")


@pytest.mark.parametrize(("prompt", "finish", "has_text"), [
    ("please [[safety]]", "SAFETY", False), ("[[recitation]] now", "RECITATION", False),
    ("[[max_tokens]] go on", "MAX_TOKENS", True)])
def test_triggers(prompt: str, finish: str, has_text: bool) -> None:
    answer = render(make_plan(TEXT, parse_generate(_body(prompt)), Triggers()))
    assert answer.finish_reason == finish
    assert bool(answer.parts) is has_text


def test_block_trigger_has_prompt_feedback_and_no_candidates() -> None:
    plan = make_plan(TEXT, parse_generate(_body("[[block]]")), Triggers())
    body = response_body(plan, render(plan), "rid")
    assert body["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in body


def test_stream_splits_text_and_puts_usage_last() -> None:
    plan = make_plan(TEXT, parse_generate(_body("stream this prompt please")), Triggers())
    answer = render(plan)
    bodies = stream_bodies(plan, answer, "rid")
    assert 2 <= len(bodies) <= 3
    joined = "".join(b["candidates"][0]["content"]["parts"][0]["text"] for b in bodies)
    assert joined == answer.parts[0]["text"]
    assert bodies[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "candidatesTokenCount" in bodies[-1]["usageMetadata"]


def test_image_model_plans_one_image_unless_noimage() -> None:
    image = resolve("gemini-2.5-flash-image", BUILTIN_DEFAULTS, {})
    assert make_plan(image, parse_generate(_body("a cat")), Triggers()).images == 1
    assert make_plan(image, parse_generate(_body("a cat [[noimage]]")), Triggers()).images == 0
    assert make_plan(TEXT, parse_generate(_body("a cat", responseModalities=["IMAGE"])), Triggers()).images == 1
