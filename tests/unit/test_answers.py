"""worker/answers: real google.genai response objects → a Generation, or the reason the answer is unusable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types

from genpool.shared import errors as e
from genpool.worker.answers import check_blocked, image_answer, json_answer, text_answer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                          "required": ["name"]}


def response(*parts: types.Part, finish: str | None = "STOP", prompt_tokens: int = 3, output_tokens: int = 5,
             thoughts: int | None = None, **kwargs: Any) -> types.GenerateContentResponse:
    return types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(role="model", parts=list(parts)), finish_reason=finish)],
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt_tokens, candidates_token_count=output_tokens, thoughts_token_count=thoughts),
        model_version="gemini-test-001", **kwargs)


def text(value: str) -> types.Part:
    return types.Part(text=value)


def png() -> types.Part:
    return types.Part(inline_data=types.Blob(mime_type="image/png", data=PNG))


def test_text_ok() -> None:
    gen = text_answer(response(text("Hello, "), text("world")))
    assert gen.body == b"Hello, world"
    assert gen.text == "Hello, world"
    assert gen.finish_reason == "STOP"
    assert gen.prompt_tokens == 3
    assert gen.output_tokens == 5
    assert gen.images == 0
    assert gen.model_version == "gemini-test-001"


def test_thoughts_are_not_in_the_answer_but_are_billed() -> None:
    gen = text_answer(response(types.Part(text="let me think", thought=True), text("42"), thoughts=7))
    assert gen.text == "42"
    assert gen.output_tokens == 5 + 7


def test_missing_usage_counts_zero() -> None:
    r = types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(parts=[text("hi")]), finish_reason="STOP")])
    gen = text_answer(r)
    assert (gen.prompt_tokens, gen.output_tokens) == (0, 0)


def test_blocked_prompt_is_content_blocked() -> None:
    r = types.GenerateContentResponse(
        prompt_feedback=types.GenerateContentResponsePromptFeedback(block_reason="SAFETY"),
        usage_metadata=types.GenerateContentResponseUsageMetadata(prompt_token_count=3))
    with pytest.raises(e.ContentBlocked, match="prompt blocked: SAFETY"):
        text_answer(r)


@pytest.mark.parametrize("finish", ["SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"])
def test_blocking_finish_reasons(finish: str) -> None:
    with pytest.raises(e.ContentBlocked, match=finish):
        text_answer(response(text("partial"), finish=finish))


@pytest.mark.parametrize("finish", ["RECITATION", "OTHER", "MALFORMED_FUNCTION_CALL"])
def test_retryable_finish_reasons(finish: str) -> None:
    with pytest.raises(e.UnusableAnswer, match=finish):
        text_answer(response(text("copied text"), finish=finish))


def test_no_candidates_is_unusable() -> None:
    with pytest.raises(e.UnusableAnswer, match="no candidates"):
        check_blocked(types.GenerateContentResponse(candidates=[]))


def test_empty_text_is_unusable() -> None:
    with pytest.raises(e.UnusableAnswer, match="empty"):
        text_answer(response(finish="STOP"))


def test_max_tokens_text_is_kept() -> None:
    gen = text_answer(response(text("Once upon a ti"), finish="MAX_TOKENS"))
    assert gen.text == "Once upon a ti"
    assert gen.finish_reason == "MAX_TOKENS"


def test_missing_finish_reason_means_stop() -> None:
    assert text_answer(response(text("hi"), finish=None)).finish_reason == "STOP"


def test_json_ok_is_reformatted() -> None:
    gen = json_answer(response(text('{"name": "Ada",'), text(' "age": 36}')), SCHEMA)
    assert json.loads(gen.body) == {"name": "Ada", "age": 36}
    assert gen.text == '{"name": "Ada", "age": 36}'
    assert gen.finish_reason == "STOP"


def test_json_invalid_is_unusable() -> None:
    with pytest.raises(e.UnusableAnswer, match="not valid JSON"):
        json_answer(response(text("Sure! Here is the JSON: {name: Ada}")), SCHEMA)


def test_json_failing_schema_is_unusable() -> None:
    with pytest.raises(e.UnusableAnswer, match="fails its schema"):
        json_answer(response(text('{"age": "thirty"}')), SCHEMA)


def test_json_cut_by_max_tokens_is_truncated() -> None:
    with pytest.raises(e.OutputTruncated, match="max_output_tokens"):
        json_answer(response(text('{"name": "Ad'), finish="MAX_TOKENS"), SCHEMA)


def test_json_complete_despite_max_tokens_is_kept() -> None:
    gen = json_answer(response(text('{"name": "Ada"}'), finish="MAX_TOKENS"), SCHEMA)
    assert json.loads(gen.body) == {"name": "Ada"}
    assert gen.finish_reason == "MAX_TOKENS"


def test_json_blocked_is_content_blocked() -> None:
    with pytest.raises(e.ContentBlocked):
        json_answer(response(text("{}"), finish="SAFETY"), SCHEMA)


def test_image_ok() -> None:
    gen = image_answer(response(text("Here is your image"), png()))
    assert gen.body == PNG
    assert gen.images == 1
    assert gen.finish_reason == "STOP"
    assert gen.prompt_tokens == 3


def test_image_counts_every_image() -> None:
    assert image_answer(response(png(), png())).images == 2


def test_image_without_image_is_unusable() -> None:
    with pytest.raises(e.UnusableAnswer, match="without an image"):
        image_answer(response(text("I cannot draw that, but here is a description")))


def test_non_image_inline_data_is_not_an_image() -> None:
    pdf = types.Part(inline_data=types.Blob(mime_type="application/pdf", data=b"%PDF-1.4"))
    with pytest.raises(e.UnusableAnswer):
        image_answer(response(pdf))


def test_image_with_empty_bytes_is_unusable() -> None:
    empty = types.Part(inline_data=types.Blob(mime_type="image/png", data=b""))
    with pytest.raises(e.UnusableAnswer):
        image_answer(response(empty))


def test_image_no_image_finish_reason_is_unusable() -> None:
    with pytest.raises(e.UnusableAnswer, match="NO_IMAGE"):
        image_answer(response(finish="NO_IMAGE"))
