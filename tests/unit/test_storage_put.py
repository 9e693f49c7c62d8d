"""What S3Store.put sends, seen by a real boto3 client up to the wire (a before-send hook answers instead of
S3): a small body goes with its headers at once, a large one after S3's "100 Continue" (#17)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from genpool.shared.settings import Settings
from genpool.shared.storage import EXPECT_CONTINUE_MIN_BYTES, S3Store, StoredObject


class _Raw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


@pytest.fixture
def store_and_sent(monkeypatch: pytest.MonkeyPatch) -> tuple[S3Store, list[Any]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    settings = Settings.from_env({"S3_ENDPOINT_URL": "http://127.0.0.1:9"}, dotenv_path=None)
    store = S3Store.from_settings(settings)
    sent: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _Raw())

    store.client.meta.events.register("before-send.s3", answer)
    return store, sent


def _put(store: S3Store, body: bytes) -> None:
    store.put(StoredObject(key="genpool/text/ab/x.txt", body=body, content_type="text/plain",
                           tags={"model": "m", "kind": "text"}, metadata={"job-id": "x", "model": "m"}))


def test_a_small_body_is_sent_without_waiting_for_100_continue(store_and_sent: tuple[S3Store, list[Any]]) -> None:
    store, sent = store_and_sent
    _put(store, b"x" * 400)
    (request,) = sent
    assert "Expect" not in request.headers
    assert request.headers["x-amz-tagging"] == b"model=m&kind=text"
    assert request.headers["x-amz-meta-job-id"] == b"x"
    assert request.body.read() == b"x" * 400


def test_a_large_body_still_asks_first(store_and_sent: tuple[S3Store, list[Any]]) -> None:
    store, sent = store_and_sent
    _put(store, b"x" * EXPECT_CONTINUE_MIN_BYTES)
    (request,) = sent
    assert request.headers["Expect"] == b"100-continue"
