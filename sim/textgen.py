"""Deterministic answer text: an echo of the prompt plus filler sized from a hash, and token estimates."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from genpool.sim.request import GenerateRequest

TOKENS_PER_INLINE_PART = 258  # what Gemini bills for one input image
ECHO_CHARS = 200
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
          "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
          "uniform", "victor", "whiskey", "xray", "yankee", "zulu")


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def prompt_tokens(request: GenerateRequest) -> int:
    """promptTokenCount: ceil(chars / 4) over all contents and the system instruction, plus inline parts."""
    chars = len(request.system_text) + sum(len(turn.text) for turn in request.turns)
    return math.ceil(chars / 4) + TOKENS_PER_INLINE_PART * request.inline_parts


def prompt_digest(model_id: str, request: GenerateRequest) -> int:
    """A stable 64-bit number per (model, whole conversation), the seed of everything generated."""
    data = f"{model_id}\x00{request.all_text}".encode("utf-8", "replace")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def filler(digest: int, count: int) -> str:
    """`count` words picked by a 64-bit LCG seeded with the digest (cheap, deterministic, well mixed)."""
    words = []
    state = digest
    for _ in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        words.append(_WORDS[(state >> 33) % len(_WORDS)])
    return " ".join(words)


def answer_text(model_id: str, request: GenerateRequest, digest: int) -> str:
    """`[model] echo: <prompt head>` and 5..44 filler words chosen by the digest."""
    head = request.last_user_text[:ECHO_CHARS]
    return f"[{model_id}] echo: {head} -- {filler(digest, 5 + digest % 40)}"


@dataclass(frozen=True)
class Shaped:
    text: str
    finish_reason: str


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text before the earliest stop sequence (which is not included), like Gemini."""
    cut = min((pos for stop in stops if (pos := text.find(stop)) >= 0), default=len(text))
    return text[:cut]


def shape(text: str, stops: tuple[str, ...], max_output_tokens: int | None) -> Shaped:
    """Apply stop sequences, then the output token budget (4 chars a token); MAX_TOKENS when cut short."""
    text = cut_at_stop(text, stops)
    if max_output_tokens is not None and text_tokens(text) > max_output_tokens:
        return Shaped(text[: max_output_tokens * 4], "MAX_TOKENS")
    return Shaped(text, "STOP")
