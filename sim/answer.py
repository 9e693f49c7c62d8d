"""What the simulated model answers: triggers, text / JSON / image parts, usage metadata, stream chunks."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

from genpool.sim.catalog import ModelSettings
from genpool.sim.config import Triggers
from genpool.sim.png import image_size, write_png
from genpool.sim.request import GenerateRequest
from genpool.sim.schemafill import fill_schema
from genpool.sim.textgen import answer_text, prompt_digest, prompt_tokens, shape, text_tokens

TOKENS_PER_IMAGE = 1290  # what Gemini bills for one generated image
_TRIGGERS = ("block", "safety", "recitation", "max_tokens", "noimage")
_SAFETY_RATING = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}


@dataclass(frozen=True)
class Plan:
    """Everything decided before quota is charged: tokens in, whether an image is made, which trigger fired."""

    settings: ModelSettings
    request: GenerateRequest
    prompt_tokens: int
    trigger: str | None
    images: int
    digest: int


@dataclass(frozen=True)
class Answer:
    parts: tuple[dict[str, Any], ...]
    finish_reason: str | None  # None: the prompt was blocked, there is no candidate
    output_tokens: int
    images: int


def _trigger(request: GenerateRequest, triggers: Triggers) -> str | None:
    text = request.all_text
    return next((name for name in _TRIGGERS if getattr(triggers, name) in text), None)


def make_plan(settings: ModelSettings, request: GenerateRequest, triggers: Triggers) -> Plan:
    trigger = _trigger(request, triggers)
    wants_image = (settings.image and request.modalities != ("TEXT",)) or "IMAGE" in request.modalities
    makes_image = wants_image and trigger in (None, "max_tokens")
    return Plan(settings, request, prompt_tokens(request), trigger, int(makes_image),
                prompt_digest(settings.model_id, request))


def _json_text(plan: Plan) -> str:
    request = plan.request
    schema = request.response_json_schema or request.response_schema
    head = request.last_user_text[:200]
    if schema is None:
        value: Any = {"model": plan.settings.model_id, "prompt": head, "answer": f"echo {plan.digest % 1000}"}
    else:
        value = fill_schema(schema, plan.digest, head)
    return json.dumps(value, ensure_ascii=False)


def _body_text(plan: Plan) -> str:
    request = plan.request
    if request.mime_type == "application/json":
        return _json_text(plan)
    schema = request.response_schema or request.response_json_schema or {}
    if request.mime_type == "text/x.enum" and schema.get("enum"):
        return str(random.Random(plan.digest).choice(schema["enum"]))
    return answer_text(plan.settings.model_id, request, plan.digest)


def _image_part(plan: Plan) -> dict[str, Any]:
    width, height = image_size(plan.request.aspect_ratio, plan.settings.image_max_px)
    rgb = ((plan.digest >> 16) & 0xFF, (plan.digest >> 8) & 0xFF, plan.digest & 0xFF)
    data = base64.b64encode(write_png(width, height, rgb)).decode("ascii")
    return {"inlineData": {"mimeType": "image/png", "data": data}}


def render(plan: Plan) -> Answer:
    if plan.trigger == "block":
        return Answer((), None, 0, 0)
    if plan.trigger in ("safety", "recitation"):
        return Answer((), plan.trigger.upper(), 0, 0)
    if plan.images:
        text = f"[{plan.settings.model_id}] image for: {plan.request.last_user_text[:200]}"
    else:
        text = _body_text(plan)
    shaped = shape(text, plan.request.stop_sequences, plan.request.max_output_tokens)
    if plan.trigger == "max_tokens":
        shaped = type(shaped)(shaped.text[: max(1, len(shaped.text) // 2)], "MAX_TOKENS")
    parts: list[dict[str, Any]] = [{"text": shaped.text}] if shaped.text else []
    if plan.images:
        parts.append(_image_part(plan))
    tokens = text_tokens(shaped.text) + TOKENS_PER_IMAGE * plan.images
    return Answer(tuple(parts), shaped.finish_reason, tokens, plan.images)


def usage(plan: Plan, answer: Answer) -> dict[str, Any]:
    prompt_details = [{"modality": "TEXT", "tokenCount": plan.prompt_tokens}]
    meta: dict[str, Any] = {"promptTokenCount": plan.prompt_tokens,
                            "totalTokenCount": plan.prompt_tokens + answer.output_tokens,
                            "promptTokensDetails": prompt_details}
    if answer.output_tokens:
        meta["candidatesTokenCount"] = answer.output_tokens
    if answer.images:
        meta["candidatesTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": answer.output_tokens - TOKENS_PER_IMAGE * answer.images},
            {"modality": "IMAGE", "tokenCount": TOKENS_PER_IMAGE * answer.images}]
    return meta


def _candidate(parts: list[dict[str, Any]], finish_reason: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    if finish_reason == "SAFETY":
        candidate["safetyRatings"] = [_SAFETY_RATING]
    return candidate


def _envelope(plan: Plan, response_id: str, usage_meta: dict[str, Any]) -> dict[str, Any]:
    return {"usageMetadata": usage_meta, "modelVersion": plan.settings.model_id, "responseId": response_id}


def response_body(plan: Plan, answer: Answer, response_id: str) -> dict[str, Any]:
    """A complete GenerateContentResponse."""
    body = _envelope(plan, response_id, usage(plan, answer))
    if answer.finish_reason is None:
        body["promptFeedback"] = {"blockReason": "SAFETY", "safetyRatings": [_SAFETY_RATING]}
    else:
        body["candidates"] = [_candidate(list(answer.parts), answer.finish_reason)]
    return body


def _split(text: str) -> list[str]:
    pieces = 2 if len(text) < 60 else 3
    step = -(-len(text) // pieces)
    return [text[i:i + step] for i in range(0, len(text), step)] or [text]


def stream_bodies(plan: Plan, answer: Answer, response_id: str) -> list[dict[str, Any]]:
    """The text spread over 2-3 chunks; images, finishReason and full usage in the last one."""
    text = next((p["text"] for p in answer.parts if "text" in p), "")
    others = [p for p in answer.parts if "text" not in p]
    if answer.finish_reason is None or not text:
        return [response_body(plan, answer, response_id)]
    early_usage = {"promptTokenCount": plan.prompt_tokens, "totalTokenCount": plan.prompt_tokens}
    pieces = _split(text)
    bodies = [{"candidates": [_candidate([{"text": piece}], None)], **_envelope(plan, response_id, early_usage)}
              for piece in pieces[:-1]]
    last = [{"text": pieces[-1]}, *others]
    bodies.append({"candidates": [_candidate(last, answer.finish_reason)],
                   **_envelope(plan, response_id, usage(plan, answer))})
    return bodies


def count_tokens_body(tokens: int) -> dict[str, Any]:
    return {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
