"""`python -m genpool.worker.main` that also accepts the benchmark's bare jobs: the no-op
(bench.workerkit.noop) and the irreducible parts composed in one job (bench.workerkit.parts).

Only for bench_cpu's baselines: the same PoolWorker, concurrency and settings run them and genpool's jobs,
so their CPU per job compares one worker process with itself.
"""

from __future__ import annotations

import sys

from bench import workerkit
from genpool.worker import jobguard, main

if __name__ == "__main__":
    jobguard.ENTRY_POINTS[workerkit.NOOP] = lambda: workerkit.noop
    jobguard.ENTRY_POINTS[workerkit.PARTS] = lambda: workerkit.parts
    sys.exit(main.main())
