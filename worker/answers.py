"""Turn a Gemini response into an output genpool can store, or the reason it cannot.

Policy for answers that are HTTP 200 but unusable (see README, "Unusable answers"):
- blocked prompt (promptFeedback.blockReason), finish SAFETY / PROHIBITED_CONTENT / IMAGE_SAFETY /
  BLOCKLIST / SPII → fail the job with the reason (another model would be asked the same thing);
- RECITATION, an image job with no image, JSON that does not parse or fails its schema → retry the
  model, then fall back (sampling differs between attempts and models);
- MAX_TOKENS → text and chat keep the truncated answer (the caller set the cap) with finish_reason
  MAX_TOKENS; a JSON answer cut short fails with the reason (raise max_output_tokens).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from genpool.shared import errors as e

BLOCKING_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "BLOCKLIST", "SPII", "IMAGE_PROHIBITED_CONTENT"}
RETRYABLE_FINISH = {"RECITATION", "IMAGE_RECITATION", "MALFORMED_FUNCTION_CALL", "OTHER", "IMAGE_OTHER", "NO_IMAGE"}


@dataclass(frozen=True)
class Generation:
    """A usable answer: the bytes to store and what the result record needs."""

    body: bytes
    finish_reason: str
    prompt_tokens: int
    output_tokens: int
    images: int
    model_version: str
    text: str = ""


def _name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def finish_reason(response: Any) -> str:
    candidates = getattr(response, "candidates", None) or []
    return _name(candidates[0].finish_reason) if candidates else ""


def _parts(response: Any) -> list[Any]:
    candidates = getattr(response, "candidates", None) or []
    content = candidates[0].content if candidates else None
    return list(getattr(content, "parts", None) or [])


def _usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage_metadata", None)
    if usage is None:
        return 0, 0
    output = (usage.candidates_token_count or 0) + (getattr(usage, "thoughts_token_count", None) or 0)
    return int(usage.prompt_token_count or 0), int(output)


def check_blocked(response: Any) -> str:
    """Raise for blocked / unusable finish reasons; return the finish reason otherwise."""
    feedback = getattr(response, "prompt_feedback", None)
    block = _name(getattr(feedback, "block_reason", None)) if feedback else ""
    if block:
        raise e.ContentBlocked(f"prompt blocked: {block}")
    reason = finish_reason(response)
    if reason in BLOCKING_FINISH:
        raise e.ContentBlocked(f"answer blocked: finish reason {reason}")
    if reason in RETRYABLE_FINISH:
        raise e.UnusableAnswer(f"unusable answer: finish reason {reason}")
    if not getattr(response, "candidates", None):
        raise e.UnusableAnswer("no candidates in the answer")
    return reason or "STOP"


def text_of(response: Any) -> str:
    """The answer's text (thought parts left out)."""
    return "".join(p.text for p in _parts(response) if getattr(p, "text", None) and not getattr(p, "thought", False))


def joined(chunks: list[Any], text: str, types: Any) -> Any:
    """One response standing for a whole stream: the last chunk (finish reason, usage, model version) with
    the stream's text as its only text part, and other parts (images) kept; a blocked prompt's feedback
    may come in any chunk."""
    last = chunks[-1]
    feedback = next((c.prompt_feedback for c in chunks if getattr(c, "prompt_feedback", None)), None)
    if not getattr(last, "candidates", None):
        return last.model_copy(update={"prompt_feedback": feedback or last.prompt_feedback})
    candidate = last.candidates[0]
    others = [p for p in _parts(last) if not getattr(p, "text", None)]
    parts = ([types.Part(text=text)] if text else []) + others
    content = types.Content(role="model", parts=parts)
    return last.model_copy(update={"candidates": [candidate.model_copy(update={"content": content})],
                                   "prompt_feedback": feedback or last.prompt_feedback})


def text_answer(response: Any) -> Generation:
    reason = check_blocked(response)
    text = text_of(response)
    if not text and reason != "MAX_TOKENS":
        raise e.UnusableAnswer("empty text answer")
    return _generation(response, text.encode(), reason, 0, text)


def json_answer(response: Any, schema: dict[str, Any]) -> Generation:
    import jsonschema

    reason = check_blocked(response)
    text = text_of(response)
    try:
        value = json.loads(text)
    except ValueError:
        if reason == "MAX_TOKENS":
            raise e.OutputTruncated("JSON answer cut short by MAX_TOKENS: raise max_output_tokens") from None
        raise e.UnusableAnswer("answer is not valid JSON") from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise e.UnusableAnswer(f"JSON answer fails its schema: {exc.message}") from None
    body = json.dumps(value, ensure_ascii=False, indent=2).encode()
    return _generation(response, body, reason, 0, text)


def image_answer(response: Any) -> Generation:
    reason = check_blocked(response)
    images = [p.inline_data for p in _parts(response)
              if getattr(p, "inline_data", None) and str(p.inline_data.mime_type or "").startswith("image/")]
    if not images or not images[0].data:
        raise e.UnusableAnswer("image job answered without an image")
    return _generation(response, bytes(images[0].data), reason, len(images))


def _generation(response: Any, body: bytes, reason: str, images: int, text: str = "") -> Generation:
    prompt_tokens, output_tokens = _usage(response)
    return Generation(body=body, finish_reason=reason, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                      images=images, model_version=str(getattr(response, "model_version", "") or ""), text=text)
