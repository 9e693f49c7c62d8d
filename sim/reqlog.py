"""The JSON-lines request log: buffered in memory, flushed by one background thread every second."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO, Any

FLUSH_EVERY_S = 1.0


class RequestLog:
    """Appends one JSON object per line; `None` path makes it a no-op."""

    def __init__(self, path: Path | None, flush_every_s: float = FLUSH_EVERY_S) -> None:
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._stop = threading.Event()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_every_s,), name="reqlog-flush",
                                         daemon=True)
        self._flusher.start()

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def _flush_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
