"""Every place genpool reaches into RQ's internals, behind one wall.

Written for and checked against RQ 3.0.x (``SUPPORTED``; pyproject pins the same range): the threaded
worker overrides private parts of ``BaseWorker`` (the dequeue loop, ``prepare_job_execution``,
``clean_registries``, ``_finalize_failure``, ``_stop_requested``, ``_ordered_queues``; the success path
uses ``_enqueue_dependents_safely``, ``_release_slot_safely`` and the job's ``_status``, ``_result`` and
``_dependency_ids``), calls
``Queue._fetch_dequeued_job``, drives ``RQScheduler`` from the worker's own thread (``_queue_names``, the
lock's TTL), writes RQ's key layout from a Lua dequeue, the job class replaces ``Job.func`` and the
callbacks, and ``lean.py`` trims RQ's per-job bookkeeping (heartbeats and the suspension check by time,
worker statistics batched, a job's start and its successful end in one MULTI each, a genpool job's
end writing only what changed and no RQ result stream; #17); the dequeue script reads the jobs' hashes and
takes a job for every free slot, and the jobs taken together start in one MULTI, which may carry a
subclass's own commands (``ride_start``: genpool's first limiter acquire). RQ's own test suite runs against this worker in CI (tests/rqsuite): a new RQ release must pass
it before the range widens.

Nothing else in genpool imports RQ's private names; the rest of the worker subclasses what is here.
"""

from __future__ import annotations

from rq.version import VERSION

SUPPORTED = (3, 0)  # RQ major.minor this package is written for
if tuple(int(p) for p in VERSION.split(".")[:2]) != SUPPORTED:
    raise ImportError(f"genpool's worker is written for RQ {SUPPORTED[0]}.{SUPPORTED[1]}.x, found RQ {VERSION}: "
                      "install the rq version pinned in genpool's requirements")
