"""What S3Store.put sends and S3Store.head reads, through a real boto3 client up to the wire (a before-send
hook answers instead of S3): a small body goes with its headers at once, a large one after S3's
"100 Continue"; the metadata travels packed in one header, and objects stored before that still read (#17)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from genpool.shared.settings import Settings
from genpool.shared.storage import (
    EXPECT_CONTINUE_MIN_BYTES,
    S3Store,
    StoredObject,
    pack_metadata,
    unpack_metadata,
    user_agent,
)

ANSWER: dict[str, str] = {}
META = {"job-id": "x", "model": "m", "model-version": "m-001 (preview) é", "finish-reason": "STOP",
        "prompt-tokens": "12", "output-tokens": "34", "images": "0"}


class _Raw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


@pytest.fixture
def store_and_sent(monkeypatch: pytest.MonkeyPatch) -> tuple[S3Store, list[Any]]:
    """A store whose requests are kept in ``sent``; each is answered 200 with the headers in ``ANSWER``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    settings = Settings.from_env({"S3_ENDPOINT_URL": "http://127.0.0.1:9"}, dotenv_path=None)
    store = S3Store.from_settings(settings)
    sent: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, dict(ANSWER), _Raw())

    store.client.meta.events.register("before-send.s3", answer)
    return store, sent


def _put(store: S3Store, body: bytes) -> None:
    store.put(StoredObject(key="genpool/text/ab/x.txt", body=body, content_type="text/plain",
                           tags={"model": "m", "kind": "text"}, metadata=META))


def test_a_small_body_is_sent_without_waiting_for_100_continue(store_and_sent: tuple[S3Store, list[Any]]) -> None:
    store, sent = store_and_sent
    _put(store, b"x" * 400)
    (request,) = sent
    assert "Expect" not in request.headers
    assert request.headers["x-amz-tagging"] == b"model=m&kind=text"
    assert [h for h in request.headers if h.lower().startswith("x-amz-meta-")] == ["x-amz-meta-genpool"]
    assert unpack_metadata({"genpool": request.headers["x-amz-meta-genpool"].decode("ascii")}) == META
    assert request.body.read() == b"x" * 400


def test_a_large_body_still_asks_first(store_and_sent: tuple[S3Store, list[Any]]) -> None:
    store, sent = store_and_sent
    _put(store, b"x" * EXPECT_CONTINUE_MIN_BYTES)
    (request,) = sent
    assert request.headers["Expect"] == b"100-continue"


def test_head_reads_the_packed_metadata(store_and_sent: tuple[S3Store, list[Any]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = store_and_sent
    monkeypatch.setitem(ANSWER, "x-amz-meta-genpool", pack_metadata(META)["genpool"])
    assert store.head("genpool/text/ab/x.txt") == META


def test_head_reads_an_object_stored_with_one_header_per_field(store_and_sent: tuple[S3Store, list[Any]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = store_and_sent
    for name in ("job-id", "model", "finish-reason", "prompt-tokens"):
        monkeypatch.setitem(ANSWER, f"x-amz-meta-{name}", META[name])
    assert store.head("genpool/text/ab/x.txt") == {k: META[k] for k in ("job-id", "model", "finish-reason",
                                                                        "prompt-tokens")}


@pytest.mark.parametrize("meta", [{}, META, {"a": "&=%+ ;?", "b": ""}])
def test_metadata_packs_into_one_ascii_header_and_back(meta: dict[str, str]) -> None:
    packed = pack_metadata(meta)
    assert len(packed) == (1 if meta else 0)
    assert all(v.isascii() for v in packed.values())
    assert unpack_metadata(packed) == meta


def test_every_put_carries_one_user_agent_built_once(store_and_sent: tuple[S3Store, list[Any]]) -> None:
    store, sent = store_and_sent
    _put(store, b"a")
    _put(store, b"b")
    (agent,) = {request.headers["User-Agent"].decode() for request in sent}
    assert agent.startswith(f"{user_agent()} Botocore/")
    assert user_agent().startswith("genpool Boto3/")
