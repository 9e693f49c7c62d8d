"""Calls in flight per model in this process, to tell a hung model from a slow answer.

A model that hangs produces no error until each call's timeout (30 s by default): the breaker would
learn of the outage only then, and every job meanwhile would call it too. So the runner reports a call
as *stalled* once it has run longer than the model's ``stall_s`` while no call to that model in this
process that started later has succeeded: a slow answer while later calls come back is not a stall, a
model that has stopped answering fresh calls is; the calls made after a stalled one count with it. Each is
reported once (one breaker failure per call), by a watch thread rather than by job threads: when a model
hangs, every job thread may be stuck in it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("genpool.stalls")


@dataclass
class _Call:
    model: str
    started: float
    granted_at_ms: int  # the limiter's grant, on Redis's clock: tells the breaker a straggler from a probe
    reported: bool = False


@dataclass
class InFlight:
    _calls: dict[int, _Call] = field(default_factory=dict)
    _last_ok: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, model: str, now: float, granted_at_ms: int = 0) -> int:
        call_id = next(self._ids)
        with self._lock:
            self._calls[call_id] = _Call(model, now, granted_at_ms)
        return call_id

    def finish(self, call_id: int, ok: bool) -> None:
        with self._lock:
            call = self._calls.pop(call_id, None)
            if ok and call is not None:
                self._last_ok[call.model] = max(self._last_ok.get(call.model, float("-inf")), call.started)

    def take_stalled(self, model: str, stall_s: float, now: float) -> list[int]:
        """The grant times of the calls to ``model`` that newly count as stalled (each is counted once, ever).

        Once one call is stalled, so is every call made after it: none of them has been answered either,
        so they count at once instead of one by one as each reaches ``stall_s``."""
        if stall_s <= 0:
            return []
        with self._lock:
            last_ok = self._last_ok.get(model, float("-inf"))
            unanswered = [c for c in self._calls.values() if c.model == model and c.started > last_ok]
            if not any(now - c.started >= stall_s for c in unanswered):
                return []
            fresh = [c for c in unanswered if not c.reported]
            for call in fresh:
                call.reported = True
        return [c.granted_at_ms for c in fresh]

    def models(self) -> set[str]:
        with self._lock:
            return {c.model for c in self._calls.values()}

    def in_flight(self, model: str) -> int:
        with self._lock:
            return sum(1 for c in self._calls.values() if c.model == model)


def start_watch(tick: Callable[[], object], stop: threading.Event, interval_s: float = 0.25) -> threading.Thread:
    """Run ``tick`` every ``interval_s`` on a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                tick()
            except Exception:  # noqa: BLE001 - the watch must outlive one bad pass (e.g. Redis down)
                log.exception("stall watch: pass failed; trying again in %.2f s", interval_s)

    thread = threading.Thread(target=loop, name="genpool-stalls", daemon=True)
    thread.start()
    return thread
