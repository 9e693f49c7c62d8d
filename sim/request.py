"""Parsing and validating a generateContent body, in camelCase or the snake_case the SDK sometimes sends."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from genpool.sim.errors import ApiError, invalid_argument
from genpool.sim.png import ASPECT_RATIOS

_SNAKE = re.compile(r"(?<!^)([A-Z])")
_MODALITIES = {"TEXT", "IMAGE", "AUDIO"}
_ROLES = {"user", "model", "function", "tool", ""}
_B64_CHARS = re.compile(rb"^[A-Za-z0-9+/_-]*={0,2}$")


def field_of(obj: dict[str, Any], camel: str, default: Any = None) -> Any:
    """obj[camel], or obj[snake_case(camel)]: the API accepts both spellings."""
    if camel in obj:
        return obj[camel]
    return obj.get(_SNAKE.sub(r"_\1", camel).lower(), default)


@dataclass(frozen=True)
class Turn:
    role: str
    text: str
    inline_parts: int


@dataclass(frozen=True)
class GenerateRequest:
    turns: tuple[Turn, ...]
    system_text: str
    max_output_tokens: int | None
    stop_sequences: tuple[str, ...]
    mime_type: str
    response_schema: dict[str, Any] | None
    response_json_schema: dict[str, Any] | None
    modalities: tuple[str, ...]
    aspect_ratio: str

    @property
    def last_user_text(self) -> str:
        for turn in reversed(self.turns):
            if turn.role in ("user", "") and turn.text:
                return turn.text
        return ""

    @property
    def all_text(self) -> str:
        return self.system_text + "\n" + "\n".join(turn.text for turn in self.turns)

    @property
    def inline_parts(self) -> int:
        return sum(turn.inline_parts for turn in self.turns)


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise invalid_argument(f"Invalid value at '{where}': {json.dumps(value)[:100]}")
    return value


def _check_inline(blob: Any, where: str) -> None:
    _expect(blob, dict, where)
    _expect(field_of(blob, "mimeType", ""), str, f"{where}.mime_type")
    data = _expect(field_of(blob, "data", ""), str, f"{where}.data").encode("ascii", "replace")
    # Gemini accepts standard and URL-safe base64 (the SDK sends URL-safe); length is checked, not decoded.
    if not _B64_CHARS.match(data) or len(data.rstrip(b"=")) % 4 == 1:
        raise invalid_argument(f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed")


def _parse_part(part: Any, where: str) -> tuple[str, int]:
    _expect(part, dict, where)
    text = _expect(part.get("text", ""), str, f"{where}.text")
    blob = field_of(part, "inlineData")
    if blob is not None:
        _check_inline(blob, f"{where}.inline_data")
        return text, 1
    return text, 0


def _parse_content(content: Any, where: str) -> Turn:
    _expect(content, dict, where)
    role = _expect(content.get("role", ""), str, f"{where}.role")
    if role not in _ROLES:
        raise invalid_argument(f"Please use a valid role: user, model. Got {role[:40]!r}.")
    parts = _expect(content.get("parts", []), list, f"{where}.parts")
    parsed = [_parse_part(part, f"{where}.parts[{i}]") for i, part in enumerate(parts)]
    return Turn(role, "\n".join(text for text, _ in parsed if text), sum(n for _, n in parsed))


def parse_contents(body: dict[str, Any]) -> tuple[Turn, ...]:
    contents = body.get("contents")
    if contents is None:
        raise invalid_argument("* GenerateContentRequest.contents: contents is not specified")
    if isinstance(contents, dict):  # a single Content is tolerated, as by the real endpoint
        contents = [contents]
    _expect(contents, list, "contents")
    if not contents:
        raise invalid_argument("* GenerateContentRequest.contents: contents is not specified")
    return tuple(_parse_content(c, f"contents[{i}]") for i, c in enumerate(contents))


def _system_text(body: dict[str, Any]) -> str:
    system = field_of(body, "systemInstruction")
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return _parse_content(system, "system_instruction").text


def _max_tokens(config: dict[str, Any]) -> int | None:
    value = field_of(config, "maxOutputTokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_argument("Invalid value at 'generation_config.max_output_tokens': must be a positive integer")
    return value


def _stop_sequences(config: dict[str, Any]) -> tuple[str, ...]:
    value = _expect(field_of(config, "stopSequences", []), list, "generation_config.stop_sequences")
    if len(value) > 5 or not all(isinstance(s, str) and s for s in value):
        raise invalid_argument("generation_config.stop_sequences must hold at most 5 non-empty strings")
    return tuple(value)


def _modalities(config: dict[str, Any]) -> tuple[str, ...]:
    value = _expect(field_of(config, "responseModalities", []), list, "generation_config.response_modalities")
    upper = tuple(str(m).upper() for m in value)
    if not set(upper) <= _MODALITIES:
        raise invalid_argument(f"Invalid value at 'generation_config.response_modalities': {value!r}"[:200])
    return upper


def _aspect_ratio(config: dict[str, Any]) -> str:
    image_config = _expect(field_of(config, "imageConfig", {}), dict, "generation_config.image_config")
    ratio = field_of(image_config, "aspectRatio", "1:1")
    if ratio not in ASPECT_RATIOS:
        raise invalid_argument(f"Unsupported aspect ratio: {str(ratio)[:20]!r}. "
                               f"Supported: {', '.join(ASPECT_RATIOS)}.")
    return str(ratio)


def _schema(config: dict[str, Any], camel: str) -> dict[str, Any] | None:
    value = field_of(config, camel)
    return None if value is None else _expect(value, dict, f"generation_config.{camel}")


def parse_generate(body: Any) -> GenerateRequest:
    """A validated GenerateRequest, or ApiError 400 naming the first problem."""
    _expect(body, dict, "request")
    config = _expect(field_of(body, "generationConfig", {}), dict, "generation_config")
    _expect(field_of(body, "safetySettings", []), list, "safety_settings")
    return GenerateRequest(
        turns=parse_contents(body), system_text=_system_text(body), max_output_tokens=_max_tokens(config),
        stop_sequences=_stop_sequences(config),
        mime_type=str(_expect(field_of(config, "responseMimeType", "text/plain"), str, "response_mime_type")),
        response_schema=_schema(config, "responseSchema"),
        response_json_schema=_schema(config, "responseJsonSchema"),
        modalities=_modalities(config), aspect_ratio=_aspect_ratio(config),
    )


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON payload received. {str(exc)[:120]}", "bad_json") from exc
