"""Waiting for results at little cost to Redis: jobs submitted with ``notify`` are announced once their
record is written (``shared/notify.py``), so a waiter blocks on one XREAD and reads only the records
announced, instead of reading every pending record five times a second.

The waiter opens the stream first and then reads every pending record once: a record written before the
stream existed is read there, one written after is announced. Every pending record is still read every
``POLL_ALL_S``: a record no worker announces is found that way (a worker of an earlier release, the
failure record RQ's cleanup writes for an abandoned job, a malformed payload's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis

from genpool.shared import keys
from genpool.shared.jobs import ResultRecord
from genpool.shared.notify import FROM_START, Announcements

POLL_ALL_S = 3.0  # every pending record read this often anyway
GATHER_S = 0.1  # after a wake with announcements, let more gather this long: at most ~10 reads a second
Progress = Callable[[int], None]


def read_records(connection: redis.Redis, job_ids: Sequence[str], results: list[ResultRecord | None],
                 indexes: Sequence[int]) -> int:
    """Fill ``results[i]`` for the ``indexes`` whose record exists (one MGET); returns how many it filled."""
    if not indexes:
        return 0
    raws = connection.mget([keys.result(job_ids[i]) for i in indexes])
    filled = 0
    for i, raw in zip(indexes, raws, strict=True):
        if raw:
            results[i] = ResultRecord.model_validate_json(raw)
            filled += 1
    return filled


def wait_announced(stream: Announcements, job_ids: Sequence[str], results: list[ResultRecord | None],
                   deadline: float, on_progress: Progress | None = None,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Fill ``results`` until every job has its record or ``deadline`` (``clock``'s time) passes."""
    stream.open()
    done = read_records(stream.connection, job_ids, results, _pending(results))
    _report(on_progress, done)
    full_read_at, cursor = clock() + POLL_ALL_S, FROM_START
    while done < len(job_ids) and clock() < deadline:
        cursor, announced = stream.read(cursor, min(full_read_at, deadline) - clock())
        found = read_records(stream.connection, job_ids, results,
                             [i for i in _pending(results) if job_ids[i] in announced])
        if clock() >= full_read_at:
            stream.open()
            found += read_records(stream.connection, job_ids, results, _pending(results))
            full_read_at = clock() + POLL_ALL_S
        elif announced:
            sleep(GATHER_S)
        if found:
            done += found
            _report(on_progress, done)


def _pending(results: list[ResultRecord | None]) -> list[int]:
    return [i for i, r in enumerate(results) if r is None]


def _report(on_progress: Progress | None, done: int) -> None:
    if on_progress is not None:
        on_progress(done)
