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
