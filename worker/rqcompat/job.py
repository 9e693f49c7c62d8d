"""An RQ job whose function is chosen by genpool's code, not imported by the name the job carries, and
which never imports a callback (RQ's ``Job.func`` and callback properties replaced)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.client import Pipeline
from rq.job import Job


class GuardedJob(Job):
    """Subclasses say which function a job runs (``resolve``); RQ's import-by-name never happens."""

    #: This job started before (a worker died under it, it was deferred or retried): RQ's ``started_at``
    #: as fetched from Redis, before this run's start overwrote it. RQ sets it in the same MULTI that puts
    #: the job in StartedJobRegistry and never clears it, so no run can start unseen by the next one.
    ran_before: bool = True

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
