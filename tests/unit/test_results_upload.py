"""ResultStore's upload retry: a first upload that goes through builds no retry loop; one that fails is
retried genpool's number of times in all, with its backoff, then kept in the spool (#17)."""

from __future__ import annotations

import logging
from pathlib import Path

import fakeredis
import pytest

from genpool.shared import keys
from genpool.shared.errors import StorageUnavailable
from genpool.shared.storage import StoredObject
from genpool.worker.answers import Generation
from genpool.worker.results import ResultStore
from genpool.worker.spool import Spool

GEN = Generation(body=b"hi", finish_reason="STOP", prompt_tokens=1, output_tokens=2, images=0, model_version="m-1")


class FlakyStore:
    bucket = "b"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.puts: list[str] = []

    def put(self, obj: StoredObject) -> None:
        self.puts.append(obj.key)
        if len(self.puts) <= self.failures:
            raise StorageUnavailable("503")

    def exists(self, key: str) -> bool:
        return key in self.puts


def _results(store: FlakyStore, tmp_path: Path, sleeps: list[float]) -> ResultStore:
    return ResultStore(fakeredis.FakeRedis(), store, Spool(tmp_path), "genpool", 60, upload_attempts=3,
                       upload_backoff_s=0.2, sleep=sleeps.append)


def test_an_upload_that_goes_through_at_once_builds_no_retry_loop(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, sleeps = FlakyStore(failures=0), []
    results = _results(store, tmp_path, sleeps)
    monkeypatch.setattr(results._upload, "copy", lambda: pytest.fail("a retry loop was built"))  # noqa: SLF001
    results.store_output("a" * 32, "text", "m", GEN)
    assert (len(store.puts), sleeps) == (1, [])


def test_a_failed_upload_is_retried_with_backoff(tmp_path: Path) -> None:
    store, sleeps = FlakyStore(failures=2), []
    results = _results(store, tmp_path, sleeps)
    ref = results.store_output("b" * 32, "text", "m", GEN)
    assert store.puts == [ref.key] * 3
    assert sleeps == [0.2, 0.4]
    assert not list(Spool(tmp_path).pending())


def test_an_upload_that_keeps_failing_is_tried_three_times_then_spooled(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    store, sleeps = FlakyStore(failures=10), []
    results = _results(store, tmp_path, sleeps)
    with caplog.at_level(logging.WARNING, logger="genpool.results"):
        ref = results.store_output("c" * 32, "text", "m", GEN)
    assert len(store.puts) == 3 and sleeps == [0.2, 0.4]
    assert "failed (attempt 1)" in caplog.text and "failed (attempt 2)" in caplog.text
    assert f"upload of {ref.key} failed 3 times" in caplog.text
    assert [p.name for p in Spool(tmp_path).pending()] == [ref.key.replace("/", "__") + ".json"]
    assert results._redis.smembers(keys.spool_index()) == {ref.key.encode()}  # noqa: SLF001
