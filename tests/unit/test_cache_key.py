"""The response cache's key: everything that decides the answer is in it, nothing else; and who uses it."""

from __future__ import annotations

from typing import Any

import pytest

from genpool.shared.jobs import parse_request
from genpool.worker.cache import cache_key, wanted

CHAIN = ("gemini-3.8-flash", "gemini-3.5-flash")
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
BASE: dict[str, dict[str, Any]] = {
    "text": {"kind": "text", "prompt": "a haiku about queues"},
    "json": {"kind": "json", "prompt": "a title", "json_schema": SCHEMA},
    "image": {"kind": "image", "prompt": "a lighthouse"},
    "chat": {"kind": "chat", "messages": [{"role": "user", "text": "hi"}]},
}


def key(request: dict[str, Any], chain: tuple[str, ...] = CHAIN, history: list[tuple[str, str]] | None = None) -> str:
    return cache_key(parse_request(request), chain, history or [])


@pytest.mark.parametrize(("base", "change"), [
    ("text", {"prompt": "a haiku about stacks"}),
    ("text", {"system_instruction": "be terse"}),
    ("text", {"generation": {"temperature": 0.5}}),
    ("text", {"generation": {"max_output_tokens": 64}}),
    ("text", {"generation": {"stop_sequences": ["END"]}}),
    ("text", {"safety": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}),
    ("json", {"json_schema": {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}}),
    ("image", {"aspect_ratio": "16:9"}),
    ("image", {"preset": "video_background"}),
    ("chat", {"messages": [{"role": "user", "text": "hello"}]}),
])
def test_whatever_decides_the_answer_changes_the_key(base: str, change: dict[str, Any]) -> None:
    assert key(BASE[base]) != key({**BASE[base], **change})


def test_the_kind_the_chain_and_the_history_change_the_key() -> None:
    assert key(BASE["text"]) != key({**BASE["json"], "prompt": BASE["text"]["prompt"]})
    assert key(BASE["text"]) != key(BASE["text"], chain=("gemini-3.5-flash", "gemini-3.8-flash"))
    assert key(BASE["chat"]) != key(BASE["chat"], history=[("user", "earlier"), ("model", "reply")])


def test_what_only_steers_the_run_leaves_the_key_alone() -> None:
    steered = {**BASE["text"], "cache": True, "on_budget": "fail", "model": "gemini-3.8-flash",
               "allow_fallback": True}
    assert key(BASE["text"]) == key(steered)  # the chain in the key stands for the model


def test_who_uses_the_cache() -> None:
    zero = parse_request({**BASE["text"], "generation": {"temperature": 0}})
    warm = parse_request({**BASE["text"], "generation": {"temperature": 0.7}})
    plain = parse_request(BASE["text"])
    assert [wanted(r, "temperature0") for r in (zero, warm, plain)] == [True, False, False]
    assert [wanted(r, "on") for r in (zero, warm, plain)] == [True, True, True]
    assert not wanted(zero, "off")
    assert wanted(parse_request({**BASE["text"], "cache": True}), "off")
    assert not wanted(parse_request({**BASE["text"], "generation": {"temperature": 0}, "cache": False}), "on")
