"""The Lua scripts, read from ``lua/`` and registered on a client (EVALSHA, loaded on first NOSCRIPT)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from genpool.shared import luascript

RECORD = "_record.lua"  # first in every script: the record's format and the limit rule
LIBRARY = "_window.lua"
BUDGET_LIBRARY = "_budget.lua"
USES_BUDGETS = frozenset(("acquire", "settle", "budget"))
#: Run before the libraries are built: the common acquire and settle return there (acquire_fast.lua says why).
FAST_PATHS = {"acquire": "acquire_fast.lua", "settle": "settle_fast.lua"}


@cache
def source(name: str, fast_path: bool = True) -> str:
    """A script's full source: the record's format, its fast path if it has one, the shared window library
    (and the budget one, where used), then the body. ``fast_path=False``: the general path alone (the tests
    compare the two)."""
    package = "genpool.shared.ratelimit"
    libraries = (LIBRARY, BUDGET_LIBRARY) if name in USES_BUDGETS else (LIBRARY,)
    parts = [luascript.read(package, f"lua/{part}") for part in (*libraries, f"{name}.lua")]
    if name in FAST_PATHS:  # left out, it read nothing: the general path finds PRE nil
        parts.insert(0, luascript.read(package, f"lua/{FAST_PATHS[name]}") if fast_path else "local PRE = nil")
    return "\n".join((luascript.read(package, f"lua/{RECORD}"), *parts))


@dataclass(frozen=True)
class Scripts:
    acquire: Script
    settle: Script
    penalize: Script
    levels: Script
    limits: Script
    budget: Script

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        """No round trip: redis-py hashes locally and loads a script only when Redis answers NOSCRIPT."""
        names = ("acquire", "settle", "penalize", "levels", "limits", "budget")
        return cls(**{name: client.register_script(source(name)) for name in names})


def evalsha(client: redis.Redis, script: Script, numkeys_keys_args: Sequence[Any]) -> Any:
    """``EVALSHA sha numkeys keys... args...`` straight through ``execute_command``, loading on NOSCRIPT.

    What ``Script.__call__`` does, minus its per-call tuple copies, import and pipeline check: the
    acquire hot path pays for every microsecond (docs/ratelimit.md, "Benchmark").
    """
    try:
        return client.execute_command("EVALSHA", script.sha, *numkeys_keys_args)
    except NoScriptError:
        script.sha = client.script_load(script.script)
        return client.execute_command("EVALSHA", script.sha, *numkeys_keys_args)
