"""What a re-run reads back from a stored answer (worker/runner.py ``_recover``), against moto's S3 server: the
metadata genpool writes packed in one header, and an object written one header per field (before #17)."""

from __future__ import annotations

import uuid
from pathlib import Path

import fakeredis
import pytest

from genpool.devstack import services
from genpool.shared.settings import Settings
from genpool.shared.storage import S3Store, object_key
from genpool.worker.answers import Generation
from genpool.worker.results import ResultStore
from genpool.worker.spool import Spool

pytestmark = pytest.mark.integration
GEN = Generation(body=b"two lines", finish_reason="MAX_TOKENS", prompt_tokens=12, output_tokens=34, images=0,
                 model_version="gemini-x-001")
FIELDS = {"model": "gemini-x", "model-version": "gemini-x-001", "finish-reason": "MAX_TOKENS",
          "prompt-tokens": "12", "output-tokens": "34", "images": "0"}


@pytest.fixture
def results(s3_service: services.Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ResultStore:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    settings = Settings.from_env({"S3_ENDPOINT_URL": s3_service.url, "S3_BUCKET": f"t-{uuid.uuid4().hex[:12]}"},
                                 dotenv_path=None)
    store = S3Store.from_settings(settings)
    store.ensure_bucket()
    return ResultStore(fakeredis.FakeRedis(), store, Spool(tmp_path), "genpool", 60)


def test_a_stored_answer_reads_back_its_metadata(results: ResultStore) -> None:
    job_id = uuid.uuid4().hex
    ref = results.store_output(job_id, "text", "gemini-x", GEN)
    head = results._store.client.head_object(Bucket=ref.bucket, Key=ref.key)  # noqa: SLF001
    assert list(head["Metadata"]) == ["genpool"]
    assert results.find_output(job_id, "text") == {"job-id": job_id, **FIELDS, "bucket": ref.bucket, "key": ref.key}


def test_an_answer_stored_one_header_per_field_still_reads_back(results: ResultStore) -> None:
    job_id = uuid.uuid4().hex
    store = results._store  # noqa: SLF001
    key = object_key("genpool", "text", job_id)
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"old", Metadata={"job-id": job_id, **FIELDS})
    assert results.find_output(job_id, "text") == {"job-id": job_id, **FIELDS, "bucket": store.bucket, "key": key}
