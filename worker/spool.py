"""A durable local spool for results that could not be uploaded: a paid result is never discarded.

Each spooled object is two files written atomically (temp + fsync + rename): the body and a JSON
sidecar with key, content type, tags and metadata. A drainer thread uploads them when S3 is back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from shared.errors import GenpoolError
from shared.storage import ObjectStore, StoredObject

log = logging.getLogger("genpool.spool")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def save(self, obj: StoredObject) -> None:
        name = obj.key.replace("/", "__")
        meta = {"key": obj.key, "content_type": obj.content_type, "tags": dict(obj.tags),
                "metadata": dict(obj.metadata)}
        _atomic_write(self.directory / f"{name}.body", obj.body)
        _atomic_write(self.directory / f"{name}.json", json.dumps(meta).encode())

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.json"))

    def drain(self, store: ObjectStore) -> int:
        """Upload every spooled object; returns how many went up. Stops at the first failure."""
        sent = 0
        with self._lock:
            for meta_path in self.pending():
                body_path = meta_path.with_suffix(".body")
                try:
                    meta = json.loads(meta_path.read_text())
                    obj = StoredObject(key=meta["key"], body=body_path.read_bytes(), content_type=meta["content_type"],
                                       tags=meta["tags"], metadata=meta["metadata"])
                    store.put(obj)
                except GenpoolError as exc:
                    log.warning("spool: S3 still unavailable (%s); %d objects waiting", exc, len(self.pending()))
                    break
                body_path.unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                sent += 1
        return sent
