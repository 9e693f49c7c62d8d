"""What bounds a worker process's memory: a cap on glibc's malloc arenas, and recycling after N jobs.

Measured (RELIABILITY.md, "Worker memory"): the RSS growth under load is glibc's per-thread arenas, not
Python objects: with 64-100 job threads glibc opens up to 8 arenas per core, each keeps the memory its
threads freed, and the process's RSS creeps up while tracemalloc's traced total stays flat. Capping the
arenas (``mallopt(M_ARENA_MAX)``, what ``MALLOC_ARENA_MAX`` sets) before the job threads start levels it
off; recycling a process after ``GENPOOL_WORKER_MAX_JOBS`` jobs bounds whatever else accumulates, without
losing a job (the process stops dequeuing, finishes its jobs in flight, exits; the supervisor starts a new one).
What is built before the first job is frozen out of the cyclic collector's sight (``freeze_startup_heap``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import subprocess
import threading
import time
from collections.abc import Callable

log = logging.getLogger("genpool.worker")
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def cap_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas for this process (0: leave glibc's default). False where there is no glibc."""
    if count <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):  # musl, macOS: no mallopt / no arenas of this kind
        return False


def freeze_startup_heap() -> int:
    """Move what exists before the first job (modules, the SDKs' models, the catalog, the clients: ~200k
    objects, all living as long as the process) out of the cyclic collector's sight, so that a full
    collection under load scans only what jobs made: one such collection cost ~150 ms, about once every
    1,500 jobs, ~0.1 ms a job (#17). Reference counting still frees them; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def supervise(procs: list[subprocess.Popen[bytes]], spawn: Callable[[], subprocess.Popen[bytes]], *,
              recycle: bool, stopping: threading.Event, poll_s: float = 0.5) -> int:
    """Wait for the worker processes; with ``recycle``, one that exits 0 (its job quota done) while we are
    not stopping is replaced. Returns the highest exit code seen once all have ended."""
    worst = 0
    while True:
        alive = 0
        for index, proc in enumerate(procs):
            code = proc.poll()
            if code is None:
                alive += 1
                continue
            if recycle and code == 0 and not stopping.is_set():
                log.info("worker process %d recycled after its job quota; starting a fresh one", proc.pid)
                procs[index] = spawn()
                alive += 1
                continue
            worst = max(worst, code if code >= 0 else 128 - code)
        if not alive:
            return worst
        time.sleep(poll_s)
