"""An RQ job whose function is chosen by genpool's code, not imported by the name the job carries, and
which never imports a callback (RQ's ``Job.func`` and callback properties replaced)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT
from rq.job import Job, JobStatus
from rq.utils import utcformat


class GuardedJob(Job):
    """Subclasses say which function a job runs (``resolve``); RQ's import-by-name never happens."""

    #: This job started before (a worker died under it, it was deferred or retried): RQ's ``started_at``
    #: as fetched from Redis, before this run's start overwrote it. RQ sets it in the same MULTI that puts
    #: the job in StartedJobRegistry and never clears it, so no run can start unseen by the next one.
    ran_before: bool = True
    #: RQ's result stream for a successful run (``Job.return_value``, rq-dashboard's result). A subclass whose
    #: results live elsewhere says False: its successful end writes no stream (a stream, an XADD and an
    #: EXPIRE a job; worker/rqcompat/lean.py).
    rq_result: ClassVar[bool] = True
    #: Writes the job's code asked to make in its successful end's MULTI (``at_end``), and what to run once
    #: that MULTI went through.
    _end_writes: list[tuple[Callable[[Pipeline], None], Callable[[], None] | None]] | None = None

    def at_end(self, write: Callable[[Pipeline], None], after: Callable[[], None] | None = None) -> None:
        """Queue ``write`` on the pipeline of the job's end (one round trip for RQ's bookkeeping and the
        job's own writes); ``after`` runs once they are written. A run that fails writes them on its own
        before RQ's failure path (``flush_end_writes``), as if they had been made at once."""
        if self._end_writes is None:
            self._end_writes = []
        self._end_writes.append((write, after))

    def write_end(self, pipeline: Pipeline) -> None:
        """Put the queued writes on ``pipeline`` (the end's MULTI); they stay queued until ``end_written``."""
        for write, _ in self._end_writes or []:
            write(pipeline)

    def end_written(self) -> None:
        """The pipeline ``write_end`` filled went through: run what waited for it, forget the writes."""
        writes, self._end_writes = self._end_writes or [], None
        for _, after in writes:
            if after is not None:
                after()

    def flush_end_writes(self, connection: redis.Redis) -> None:
        """The queued writes in a round trip of their own (an end other than the lean success path)."""
        if not self._end_writes:
            return
        with connection.pipeline() as pipe:
            self.write_end(pipe)
            pipe.execute()
        self.end_written()

    def end_fields(self) -> dict[FieldT, EncodableT]:
        """What a successful run changes in the job's hash, for its end to write (RQ saves the whole hash
        again, its payload recompressed): the run's code is chosen by genpool and changes nothing else."""
        return {"status": JobStatus(self._status).value, "ended_at": utcformat(self.ended_at) if self.ended_at else "",
                "last_heartbeat": utcformat(self.last_heartbeat) if self.last_heartbeat else ""}

    def prepare_for_execution(self, worker_name: str, pipeline: Pipeline) -> None:
        self.ran_before = self.started_at is not None
        super().prepare_for_execution(worker_name, pipeline)

    def resolve(self) -> Callable[..., Any]:
        raise NotImplementedError

    @property
    def func(self) -> Callable[..., Any]:
        return self.resolve()

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None
