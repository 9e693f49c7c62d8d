"""A dequeue that never drops a job.

RQ 3.0 pops with LPOP/BLPOP when a worker listens on several queues (genpool's three priorities), so the
job id leaves every Redis list at once: a worker killed between the pop and the job's start loses the job
for good (in no queue, no registry, status "queued" forever — the chaos test caught two that way). Here
the id moves into its queue's intermediate list in the same atomic step (LMOVE, priorities in order, one
script), where a dead worker's jobs are found and requeued (``ThreadedWorker._recover_intermediate``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis
from rq import Queue

from genpool.shared import luascript

LUA = luascript.read("genpool.worker.rqcompat", "dequeue.lua")
#: While idle: block on the first queue this long, then look at every queue again. A job pushed to
#: another queue waits at most this long for an idle worker (0.2 s was a fifth of a second on the start
#: of a small batch into an idle pool). The price is Redis work while idle: one cycle is the script (its
#: three LMOVEs) and a BLMOVE, ~50 commands and ~1.8 ms of Redis CPU a second per idle worker at 0.1 s
#: (bench_redis measures it), twice that at 0.05 s.
POLL_S = 0.1


class SafeDequeue:
    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._script = connection.register_script(LUA)

    def pop(self, queues: Sequence[Queue], timeout_s: float | None) -> tuple[str, str] | None:
        """(queue key, job id) of the next job, now in its queue's intermediate list; None when every
        queue stayed empty for ``timeout_s`` (None: do not wait)."""
        keys = [key for queue in queues for key in (queue.key, queue.intermediate_queue.key)]
        deadline = time.monotonic() + (timeout_s or 0.0)
        while True:
            hit = self._script(keys=keys)
            if hit:
                return _text(hit[0]), _text(hit[1])
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return None
            first = queues[0]
            # BLMOVE's timeout is a float in seconds (redis-py's stub says int)
            job_id = self.connection.execute_command("BLMOVE", first.key, first.intermediate_queue.key, "LEFT",
                                                     "RIGHT", min(POLL_S, remaining_s))
            if job_id is not None:
                return first.key, _text(job_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
