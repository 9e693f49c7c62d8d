"""A durable local spool for results that could not be uploaded: a paid result is never discarded.

Each spooled object is two files written atomically (temp + fsync + rename): the body and a JSON
sidecar with key, content type, tags and metadata. A drainer thread uploads them when S3 is back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from genpool.shared.errors import GenpoolError
from genpool.shared.storage import ObjectStore, StoredObject

log = logging.getLogger("genpool.spool")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)  # the rename itself must reach the disk, or a crash can undo it


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    def drain(self, store: ObjectStore, on_uploaded: Callable[[str], None] | None = None) -> int:
        """Upload every spooled object; returns how many went up. Stops at the first failure.

        Several worker processes on one host may share the directory: an object another drainer has
        already taken is skipped (uploading it twice is harmless, the key and body are the same)."""
        sent = 0
        with self._lock:
            for meta_path in self.pending():
                try:
                    obj = _load(meta_path)
                    store.put(obj)
                except FileNotFoundError:
                    continue
                except GenpoolError as exc:
                    log.warning("spool: S3 still unavailable (%s); %d objects waiting", exc, len(self.pending()))
                    break
                meta_path.with_suffix(".body").unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                if on_uploaded is not None:
                    on_uploaded(obj.key)
                sent += 1
        return sent


def _load(meta_path: Path) -> StoredObject:
    meta = json.loads(meta_path.read_text())
    body = meta_path.with_suffix(".body").read_bytes()
    return StoredObject(key=meta["key"], body=body, content_type=meta["content_type"], tags=meta["tags"],
                        metadata=meta["metadata"])
