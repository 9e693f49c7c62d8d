"""Result records announced to the producer waiting for them: what the worker writes and the waiter reads.

Only jobs submitted with ``notify`` name a producer's stream (``keys.results_notify``, the envelope's
``notify``). The worker adds the job's id to it in the pipeline that writes the record, and only while the
stream exists (XADD NOMKSTREAM): a waiter opens the stream and keeps it open while it waits, so nobody
waiting costs nothing but the no-op XADD, and a stream never outlives its waiters by more than
``STREAM_TTL_S``. Entries: ``job`` = the job id (a waiter's own ``open`` entries carry no ``job``).
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from genpool.shared import keys

MAXLEN = 10_000  # approximate cap: a waiter that falls this far behind reads the records directly
STREAM_TTL_S = 60  # how long a stream outlives its waiters' last refresh
FIELD = "job"
Cursor = bytes | str  # a stream entry id
FROM_START: Cursor = "0-0"


class Pipe(Protocol):
    def xadd(self, name: str, fields: Any, *args: Any, **kwargs: Any) -> Any: ...


def announce(pipe: Pipe, waiter: str, job_id: str) -> None:
    """Queue the announcement of ``job_id``'s record on a pipeline (a no-op when nobody waits)."""
    pipe.xadd(keys.results_notify(waiter), {FIELD: job_id}, maxlen=MAXLEN, approximate=True, nomkstream=True)


class Announcements:
    """One producer's stream, for its waiters (each keeps its own cursor: safe to share across threads)."""

    def __init__(self, connection: redis.Redis, waiter: str, block_s: float) -> None:
        self.connection = connection
        self.waiter = waiter
        self.key = keys.results_notify(waiter)
        self.block_s = block_s  # below the connection's socket timeout

    def open(self) -> None:
        """Create the stream, or keep it, for STREAM_TTL_S more: workers announce on it from now on."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.xadd(self.key, {"open": "1"}, maxlen=MAXLEN, approximate=True)
            pipe.expire(self.key, STREAM_TTL_S)
            pipe.execute()

    def read(self, cursor: Cursor, timeout_s: float) -> tuple[Cursor, set[str]]:
        """The job ids announced after ``cursor`` ("0-0": from the start), blocking up to ``timeout_s`` (at
        most ``block_s``) for the first; and the cursor to read on from."""
        block_ms = max(1, int(min(timeout_s, self.block_s) * 1000))
        reply: list[Any] = self.connection.xread({self.key: cursor}, block=block_ms) or []  # type: ignore[assignment]
        announced: set[str] = set()
        for _, entries in reply:
            for entry_id, fields in entries:
                cursor = entry_id
                job = fields.get(FIELD.encode())
                if job is not None:
                    announced.add(job.decode())
        return cursor, announced
