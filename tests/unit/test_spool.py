"""The durable spool: atomic files, upload when the store answers, shared directories between drainers."""

from __future__ import annotations

from pathlib import Path

from genpool.shared.errors import StorageUnavailable
from genpool.shared.storage import StoredObject
from genpool.worker.spool import Spool


class Store:
    bucket = "b"

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.objects: dict[str, StoredObject] = {}

    def put(self, obj: StoredObject) -> None:
        if self.down:
            raise StorageUnavailable("object store unreachable")
        self.objects[obj.key] = obj

    def exists(self, key: str) -> bool:
        return key in self.objects


def _obj(n: int) -> StoredObject:
    return StoredObject(key=f"genpool/text/0{n}/{n:032x}.txt", body=f"body {n}".encode(), content_type="text/plain",
                        tags={"kind": "text"}, metadata={"job-id": f"{n:032x}"})


def test_spooled_objects_survive_until_the_store_answers(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(3):
        spool.save(_obj(n))
    assert spool.drain(Store(down=True)) == 0
    assert len(spool.pending()) == 3
    store, uploaded = Store(), []
    assert Spool(tmp_path).drain(store, on_uploaded=uploaded.append) == 3  # a new process finds them
    assert store.objects == {o.key: o for o in map(_obj, range(3))}
    assert sorted(uploaded) == sorted(_obj(n).key for n in range(3))
    assert list(tmp_path.iterdir()) == []


def test_a_drainer_skips_what_another_drainer_on_the_host_took(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(3):
        spool.save(_obj(n))
    taken = spool.pending()[1]
    taken.with_suffix(".body").unlink()  # the other process is halfway through removing its files
    store, uploaded = Store(), []
    assert Spool(tmp_path).drain(store, on_uploaded=uploaded.append) == 2  # no FileNotFoundError escapes
    assert len(store.objects) == 2 == len(uploaded)
    assert spool.pending() == [taken]  # left for the drainer that owns it to finish removing
