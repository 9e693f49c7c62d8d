"""freeze_startup_heap: what exists before the first job leaves the cyclic collector's sight (#17)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from genpool.worker.memory import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as before


def test_objects_that_exist_at_start_are_frozen_and_new_ones_are_not(unfrozen: None) -> None:
    before: list[object] = [object() for _ in range(3)]
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() > 0
    after: list[object] = []
    assert all(gc.is_tracked(o) for o in (before, after))
    tracked = {id(o) for o in gc.get_objects()}
    assert id(after) in tracked and id(before) not in tracked  # only what jobs make is scanned
