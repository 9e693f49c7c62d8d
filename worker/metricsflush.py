"""A worker process's job metrics, summed in memory and written to Redis about once a second.

Per job, the counters it moves (attempts, latency bucket, timeline slot, tokens, spend: ~12 fields) cost
one HINCRBY(FLOAT) each; summed over the jobs of a second, a busy process writes each field once. What
``genpool stats`` and the Prometheus exporter read is unchanged (the same hashes and fields); it lags the
jobs by up to ``every_s``. A flush that fails (Redis away) keeps its counts for the next one; the last
flush runs when the worker stops.
"""

from __future__ import annotations

import logging
import threading

import redis

from genpool.shared.metrics import MetricsBatch

log = logging.getLogger("genpool.metrics")


class MetricsFlusher:
    """Sums ``add``-ed batches; ``flush`` writes them in one pipeline (a thread does it every ``every_s``)."""

    def __init__(self, connection: redis.Redis, every_s: float = 1.0) -> None:
        self._redis = connection
        self.every_s = every_s
        self._pending = MetricsBatch()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, batch: MetricsBatch) -> None:
        with self._lock:
            self._pending.merge(batch)

    def flush(self) -> bool:
        """Write what was added since the last flush; False (counts kept) when Redis is unreachable."""
        with self._lock:
            batch, self._pending = self._pending, MetricsBatch()
        if not batch:
            return True
        try:
            pipe = self._redis.pipeline(transaction=True)  # all or nothing: kept counts are not counted twice
            batch.write(pipe)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics: cannot write counters to Redis (%s); kept for the next flush", exc)
            self.add(batch)
            return False
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="genpool-metrics", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.every_s * 2))
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.flush()
