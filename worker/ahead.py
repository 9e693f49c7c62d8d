"""The head model's acquire made ahead, in the job's start MULTI: one round trip less a job (#17).

A first run's first call goes to its chain's head model, asking for the request's estimate: all known
once its envelope is read. The worker queues that acquire on RQ's start MULTI (``PoolWorker.ride_start``)
and keeps the decision here under the job's id; the job's first attempt on that model takes it instead of
making the round trip itself (``Runner._attempt``), whatever it says (granted, wait, unavailable). A job that
ends without taking it gives a grant back (``Runner.release_ahead``): refused storage, a failure before
its call. Only first runs ride (the route of a job that ran before is pinned in Redis, read by the job),
never a job that may be served from the response cache, and never when Redis had no decision to give
(the script not loaded yet, the model without limits yet): those jobs acquire as they always did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from genpool.worker.ports import Decision


@dataclass(frozen=True)
class Plan:
    """What a job's first acquire asks of its head model."""

    model: str
    tokens: int
    images: int
    max_wait_ms: int
    cost_micro: int


@dataclass(frozen=True)
class Grant:
    """A decision made ahead; ``at_s``: the worker's monotonic clock when it arrived."""

    plan: Plan
    decision: Decision
    at_s: float

    def delay_s(self, now_s: float) -> float:
        """What is left of a granted call's delay (it counted from the decision)."""
        return max(0.0, self.decision.delay_ms / 1000 - (now_s - self.at_s))


class Ahead:
    """The decisions made ahead, by job id, until the job takes or drops its own (its threads share it)."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def put(self, job_id: str, grant: Grant) -> None:
        with self._lock:
            self._grants[job_id] = grant

    def take(self, job_id: str, model: str) -> Grant | None:
        """The job's decision for ``model``, once: its first attempt there uses it."""
        with self._lock:
            grant = self._grants.get(job_id)
            if grant is None or grant.plan.model != model:
                return None
            return self._grants.pop(job_id)

    def drop(self, job_id: str) -> Grant | None:
        """The job's decision it never took (it ended without an attempt on that model)."""
        with self._lock:
            return self._grants.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._grants)
