"""An RQ job whose function is chosen by genpool's code, not imported by the name the job carries, and
which never imports a callback (RQ's ``Job.func`` and callback properties replaced)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rq.job import Job


class GuardedJob(Job):
    """Subclasses say which function a job runs (``resolve``); RQ's import-by-name never happens."""

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
