"""Job functions for the RQ-semantics tests: they run on the worker's threads in the test process."""

from __future__ import annotations

import threading

RELEASE = threading.Event()  # held_job waits for it (a test sets it)
STARTED = threading.Event()


def quick(value: int = 1) -> int:
    return value


def held_job() -> str:
    STARTED.set()
    RELEASE.wait(30)
    return "released"


def slow(seconds: float = 0.5) -> float:
    import time

    time.sleep(seconds)
    return seconds


AFTER_END: list[str] = []  # keys whose end writes went through (the ``after`` of ``at_end``)


def marks_at_end(key: str) -> str:
    """Queue a SET of ``key`` for the job's end MULTI (GuardedJob.at_end), as genpool's record does."""
    from rq import get_current_job

    job = get_current_job()
    job.at_end(lambda pipe: pipe.set(key, "1"), lambda: AFTER_END.append(key))  # type: ignore[union-attr]
    return key


def marks_then_fails(key: str) -> None:
    marks_at_end(key)
    raise ValueError("failed after queueing its end writes")
