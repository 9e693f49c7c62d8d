"""A dequeue that never drops a job.

RQ 3.0 pops with LPOP/BLPOP when a worker listens on several queues (genpool's three priorities), so the
job id leaves every Redis list at once: a worker killed between the pop and the job's start loses the job
for good (in no queue, no registry, status "queued" forever — the chaos test caught two that way). Here
the id moves into its queue's intermediate list in the same atomic step (LMOVE, priorities in order, one
script), where a dead worker's jobs are found and requeued (``ThreadedWorker._recover_intermediate``).
The same script reads the job's hash, which RQ would fetch in a second round trip, and takes as many jobs
as the worker has free slots (one round trip for all).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

import redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue

from genpool.shared import luascript

LUA = luascript.read("genpool.worker.rqcompat", "dequeue.lua")
#: While idle: block on the first queue this long, then look at every queue again. A job pushed to
#: another queue waits at most this long for an idle worker (0.2 s was a fifth of a second on the start
#: of a small batch into an idle pool). The price is Redis work while idle: one cycle is the script (its
#: three LMOVEs) and a BLMOVE, ~50 commands and ~1.8 ms of Redis CPU a second per idle worker at 0.1 s
#: (bench_redis measures it), twice that at 0.05 s.
POLL_S = 0.1


class Popped(NamedTuple):
    """A job taken from a queue (now in its intermediate list) and, when the script read it, its hash."""

    queue_key: str
    job_id: str
    fields: dict[bytes, bytes] | None = None  # None: not read (the blocking pop); empty: no such job hash


class SafeDequeue:
    def __init__(self, connection: redis.Redis, job_prefix: str = "rq:job:") -> None:
        self.connection = connection
        self._script = connection.register_script(LUA)
        self._job_prefix = job_prefix

    def pop(self, queues: Sequence[Queue], timeout_s: float | None, count: int = 1) -> list[Popped]:
        """Up to ``count`` jobs, in priority order, now in their queues' intermediate lists; empty when
        every queue stayed empty for ``timeout_s`` (None: do not wait). Waiting, it takes the first job
        that comes."""
        keys = [key for queue in queues for key in (queue.key, queue.intermediate_queue.key)]
        deadline = time.monotonic() + (timeout_s or 0.0)
        while True:
            flat = self._script(keys=keys, args=[self._job_prefix, count])
            if flat:
                return [Popped(_text(flat[i]), _text(flat[i + 1]), _fields(flat[i + 2]))
                        for i in range(0, len(flat), 3)]
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return []
            first = queues[0]
            # BLMOVE's timeout is a float in seconds (redis-py's stub says int)
            job_id = self.connection.execute_command("BLMOVE", first.key, first.intermediate_queue.key, "LEFT",
                                                     "RIGHT", min(POLL_S, remaining_s))
            if job_id is not None:
                return [Popped(first.key, _text(job_id))]

    def give_back(self, popped: Sequence[Popped]) -> None:
        """Jobs taken and not started: back to the front of their queues, in their order (one MULTI)."""
        if not popped:
            return
        with self.connection.pipeline() as pipe:
            for hit in reversed(popped):
                pipe.lrem(IntermediateQueue.get_intermediate_queue_key(hit.queue_key), 1, hit.job_id)
                pipe.lpush(hit.queue_key, hit.job_id)
            pipe.execute()


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
