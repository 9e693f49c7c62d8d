"""The model state hash's field names live in genpool.shared.ratelimit.state; the Lua scripts that read and
write that hash use no other names (a renamed field must be renamed for the operator tools too)."""

from __future__ import annotations

import re

import pytest

from genpool.shared import luascript
from genpool.shared.ratelimit import state

# HSET / HGET / HMGET / HDEL / HEXISTS / HINCRBY on the state hash: KEYS[3] in the limiter's scripts,
# `key` (= KEYS[1]) in the breaker.
CALL = re.compile(r"redis\.call\('H[A-Z]+',\s*(?P<key>KEYS\[3\]|key)\s*,(?P<args>[^)]*)\)", re.S)
NAME = re.compile(r"'([a-z_]+)'")


def state_fields_used(script: str) -> set[str]:
    source = luascript.read("genpool.shared.ratelimit", f"lua/{script}.lua")
    return {name for call in CALL.finditer(source) for name in NAME.findall(call.group("args"))}


@pytest.mark.parametrize("script", ["breaker", "acquire", "penalize"])
def test_the_scripts_use_only_the_named_state_fields(script: str) -> None:
    used = state_fields_used(script)
    assert used, f"{script}.lua: found no access to the state hash (has its key changed?)"
    assert used <= state.FIELDS, used - state.FIELDS


def test_every_named_field_is_used_by_some_script() -> None:
    used = set().union(*(state_fields_used(s) for s in ("breaker", "acquire", "penalize")))
    assert used >= state.FIELDS, state.FIELDS - used
