"""genpool.worker.tasks.generate: runs the job through the runtime's runner and hands RQ a pointer, not the record."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from genpool.shared import keys
from genpool.worker import tasks
from genpool.worker.runtime import set_runtime
from tests.unit.test_runner import World, envelope_for


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    set_runtime(SimpleNamespace(runner=w.runner()))  # type: ignore[arg-type]
    yield w
    set_runtime(None)


def test_generate_returns_a_pointer_to_the_saved_record(world: World) -> None:
    env = envelope_for()
    returned = tasks.generate(env.model_dump(mode="json"))
    saved = [record for record, _ in world.results.saved]
    assert [r.id for r in saved] == [env.job_id]
    assert returned == {"status": "finished", "result_key": keys.result(env.job_id)}


def test_generate_runs_a_rerun_check_only_inside_rq(world: World) -> None:
    """Outside an RQ job there is no retry count: the job is a first run and calls the model once."""
    tasks.generate(envelope_for().model_dump(mode="json"))
    assert world.gateway.models_called() == ["m1"]
