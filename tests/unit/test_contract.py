"""The producer/worker contract lives once (genpool.shared.contract) and both sides agree on it."""

from __future__ import annotations

import sys

import fakeredis
import pytest
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from genpool.producer.client import GenPool
from genpool.shared import contract
from genpool.shared.catalog import parse_catalog
from genpool.shared.errors import ValidationError
from genpool.shared.jobs import TextRequest
from genpool.shared.settings import Settings
from genpool.worker import runner, tasks
from genpool.worker.jobguard import GenpoolJob


def test_the_entry_point_name_resolves_to_the_workers_task() -> None:
    assert import_attribute(contract.TASK) is tasks.generate


@pytest.mark.parametrize("name", [contract.TASK, *contract.LEGACY_TASKS])
def test_a_job_under_either_name_runs_genpools_task_without_importing_by_name(name: str) -> None:
    """A job queued by a producer of the old layout (``LEGACY_TASKS``) still runs, and resolving it
    never imports a module by the name the job carries (a user's own ``worker`` package stays untouched)."""
    job = GenpoolJob.create(name, args=[{}], connection=fakeredis.FakeRedis(), serializer=JSONSerializer)
    before = set(sys.modules)
    assert job.func is tasks.generate
    assert "worker" not in set(sys.modules) - before


@pytest.mark.parametrize("chars", [1, 3, 4, 5, 4001, 4003])
def test_producer_and_worker_count_prompt_tokens_alike(chars: int) -> None:
    request = TextRequest(prompt="x" * chars)
    assert runner.estimate_tokens(request) == contract.estimate_tokens(chars) == -(-chars // 4)


def test_the_producer_rejects_what_every_model_of_the_chain_would_skip() -> None:
    """At the boundary the producer counts like the worker: a prompt one char over the largest window is
    rejected at submit instead of failing on every model (the producer used to round down)."""
    catalog = parse_catalog({"models": {"small": {"input_token_limit": 100}, "large": {"input_token_limit": 1000},
                                        "img": {"kind": "image"}},
                             "chains": {"text": ["small", "large"], "chat": ["small"], "json": ["small"],
                                        "image": ["img"]}})
    pool = GenPool(fakeredis.FakeRedis(), Settings.from_env({}, dotenv_path=None), catalog)
    largest = 1000
    pool.validate({"kind": "text", "prompt": "x" * (largest * contract.CHARS_PER_TOKEN)})
    with pytest.raises(ValidationError, match="above the largest input limit"):
        pool.validate({"kind": "text", "prompt": "x" * (largest * contract.CHARS_PER_TOKEN + 1)})


def test_rerun_is_told_by_the_retries_rq_has_left() -> None:
    assert not contract.is_rerun(None)
    assert not contract.is_rerun(contract.ABANDONED_RETRIES)
    assert contract.is_rerun(contract.ABANDONED_RETRIES - 1)


@pytest.mark.parametrize("schema", [
    {"type": "thing"},
    {"type": "object", "properties": {"a": {"type": "string", "minLength": "3"}}},
    {"type": "object", "properties": {"a": 1}},
    {"type": "array", "items": {"type": "integer", "minimum": True}},
    {"type": "object", "required": ["a"]},
    {"type": "string", "enum": []},
    {"properties": {}},
])
def test_a_bad_schema_is_refused_with_and_without_jsonschema(schema: dict[str, object],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from genpool.shared.schema import schema_problems

    assert schema_problems(schema)
    monkeypatch.setitem(sys.modules, "jsonschema.validators", None)  # the light client install
    assert schema_problems(schema)


def test_the_meta_schema_catches_what_the_hand_written_subset_does_not() -> None:
    from genpool.shared.schema import schema_problems

    assert schema_problems({"type": "object", "properties": {"a": {"type": "string", "pattern": 5}}})
    assert schema_problems({"type": "object", "properties": {"a": {"type": "string"}}}) == []
