"""How an operator command (`genpool limits | models | budget`) reports a failure: one line, an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

import redis

from genpool.shared.errors import EXIT_FAILED, GenpoolError, exit_code


def run_tool(name: str, body: Callable[[], int]) -> int:
    """``body``'s exit code; Redis unreachable (1) or a genpool error (1 or 2) as one line on stderr."""
    try:
        return body()
    except redis.RedisError as exc:
        print(f"genpool {name}: cannot reach Redis at REDIS_URL: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except GenpoolError as exc:
        print(f"genpool {name}: {exc}", file=sys.stderr)
        return exit_code(exc)
