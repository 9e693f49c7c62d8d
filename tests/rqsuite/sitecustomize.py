"""Subprocesses of RQ's test suite (under the genpool harness) reach the harness's redis-server and
run genpool's worker."""

import contextlib

with contextlib.suppress(Exception):  # never break an interpreter's start
    import genpool_rqsuite  # noqa: F401 - patches on import
