"""pytest plugin that runs RQ's own test suite against genpool's worker (loaded with ``-p genpool_rqsuite``
inside the unpacked RQ sdist; see test_rq_suite.py).

- RQ's tests talk to ``Redis()`` on localhost:6379; here every ``Redis()`` without a port, and every URL
  naming port 6379, gets the port of the redis-server the harness started (``GENPOOL_RQSUITE_REDIS_PORT``),
  also in subprocesses (sitecustomize.py beside this file).
- ``rq.Worker`` and ``rq.SimpleWorker`` (also under ``rq.worker``) become genpool's ``PoolWorker`` before
  RQ's test modules import them. ``GENPOOL_RQSUITE_MODE``: ``as_built`` is the worker exactly as genpool
  builds it (JSON only, genpool's entry point only); ``rq_jobs`` lets it run RQ's job class with the
  serializer the test asks for (pickle by default), to check the threaded worker's RQ semantics.
"""

from __future__ import annotations

import inspect
import os
from typing import Any


def patch_redis_default_port() -> None:
    port = os.environ.get("GENPOOL_RQSUITE_REDIS_PORT")
    if not port:
        return
    import redis

    for cls in (redis.Redis, redis.Connection):
        init = inspect.unwrap(cls.__init__)  # redis-py wraps Redis.__init__ (deprecated-argument checks)
        code = init.__code__
        positional = list(code.co_varnames[:code.co_argcount])
        defaults = list(init.__defaults__ or ())
        defaults[positional.index("port") - (len(positional) - len(defaults))] = int(port)
        init.__defaults__ = tuple(defaults)
    from_url = redis.ConnectionPool.from_url.__func__  # type: ignore[attr-defined]

    def to_harness(cls: Any, url: str, **kwargs: Any) -> Any:  # RQ's tests spell out localhost:6379 too
        return from_url(cls, url.replace(":6379/", f":{port}/"), **kwargs)

    redis.ConnectionPool.from_url = classmethod(to_harness)  # type: ignore[assignment,method-assign]


def suite_worker_class() -> type[Any]:
    from rq.job import Job
    from rq.serializers import DefaultSerializer

    from genpool.worker.pool import PoolWorker

    mode = os.environ.get("GENPOOL_RQSUITE_MODE", "as_built")

    class SuiteWorker(PoolWorker):
        if mode == "rq_jobs":
            job_class = Job

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if mode == "rq_jobs":
                kwargs.setdefault("job_class", type(self).job_class)  # (the worker before rqcompat ignored it)
                kwargs.setdefault("serializer", DefaultSerializer)
                kwargs.setdefault("exception_handlers", None)
            super().__init__(*args, **kwargs)

    SuiteWorker.__name__ = SuiteWorker.__qualname__ = "Worker"
    return SuiteWorker


def install() -> None:
    patch_redis_default_port()
    import rq
    import rq.worker

    worker = suite_worker_class()
    for module in (rq, rq.worker):
        module.Worker = worker  # type: ignore[attr-defined,misc]
        module.SimpleWorker = worker  # type: ignore[attr-defined,misc]


install()
