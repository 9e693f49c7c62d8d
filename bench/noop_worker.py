"""`python -m genpool.worker.main` that also accepts the benchmark's bare no-op job (bench.workerkit.noop).

Only for bench_cpu's baseline: the same PoolWorker, concurrency and settings run both the no-op jobs and
genpool's jobs, so their CPU per job compares one worker process with itself.
"""

from __future__ import annotations

import sys

from bench import workerkit
from genpool.worker import jobguard, main

NOOP = "bench.workerkit.noop"

if __name__ == "__main__":
    jobguard.ENTRY_POINTS[NOOP] = lambda: workerkit.noop
    sys.exit(main.main())
