"""Injected faults through the SDK: error codes, hangs, resets, slowness, time windows, rates, config faults."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from genpool.devstack import services
from tests.conftest import SIM_TEST_KEY, read_jsonl
from tests.conftest import sim_admin as admin

pytestmark = pytest.mark.integration

TEXT_MODEL = "gemini-2.5-flash"
OTHER_MODEL = "gemini-2.5-flash-lite"


def make_client(url: str, timeout_ms: int = 10_000) -> genai.Client:
    return genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(base_url=url, timeout=timeout_ms))


@pytest.fixture
def client(sim_url: str) -> genai.Client:
    return make_client(sim_url)


@pytest.mark.parametrize(("kind", "error_type", "status"), [
    ("503", errors.ServerError, "UNAVAILABLE"), ("500", errors.ServerError, "INTERNAL"),
    ("404", errors.ClientError, "NOT_FOUND"), ("400", errors.ClientError, "INVALID_ARGUMENT")])
def test_error_faults(sim_url: str, client: genai.Client, kind: str, error_type: type[errors.APIError],
                      status: str) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": kind, "model": TEXT_MODEL}]})
    with pytest.raises(error_type) as caught:
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    assert caught.value.code == int(kind) and caught.value.status == status
    client.models.generate_content(model=OTHER_MODEL, contents="other models are unaffected")
    stats = admin(sim_url, "stats")["models"][TEXT_MODEL]
    assert stats["by_reason"] == {f"fault:{kind}": 1}


def test_503_message(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "503"}]})
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    assert caught.value.message == "The model is overloaded. Please try again later."


def test_hang_times_out_on_the_client(sim_url: str) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "hang", "model": TEXT_MODEL}]})
    impatient = make_client(sim_url, timeout_ms=400)  # keep a reference: a dropped Client closes its pool
    started = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        impatient.models.generate_content(model=TEXT_MODEL, contents="x")
    assert 0.35 < time.monotonic() - started < 3.0
    assert admin(sim_url, "stats")["models"][TEXT_MODEL]["by_reason"] == {"fault:hang": 1}


def test_short_hang_closes_without_response(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "hang", "delay_s": 0.3}]})
    with pytest.raises(httpx2.TransportError) as caught:
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    assert not isinstance(caught.value, httpx2.TimeoutException)


def test_reset_drops_the_connection(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "reset", "model": TEXT_MODEL}]})
    with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    admin(sim_url, "faults", {"faults": []})
    assert client.models.generate_content(model=TEXT_MODEL, contents="the client recovers").text


def test_slow_adds_latency(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "slow", "delay_s": 0.5}]})
    started = time.monotonic()
    response = client.models.generate_content(model=TEXT_MODEL, contents="take your time")
    assert time.monotonic() - started >= 0.5
    assert "echo: take your time" in (response.text or "")
    assert admin(sim_url, "stats")["models"][TEXT_MODEL]["by_reason"] == {"fault:slow": 1}


def test_fault_window_is_relative_to_the_post(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "503", "start_s": 0, "end_s": 0.5}]})
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=TEXT_MODEL, contents="during")
    time.sleep(0.6)
    client.models.generate_content(model=TEXT_MODEL, contents="after")
    admin(sim_url, "faults", {"faults": [{"kind": "503", "start_s": 0.4}]})
    client.models.generate_content(model=TEXT_MODEL, contents="before")
    time.sleep(0.5)
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=TEXT_MODEL, contents="started")


def test_fault_rate_hits_a_share(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "500", "rate": 0.5}]})
    failures = 0
    for i in range(60):
        try:
            client.models.generate_content(model=TEXT_MODEL, contents=f"r{i}")
        except errors.ServerError:
            failures += 1
    assert 15 <= failures <= 45


def test_faults_before_quota(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpm": 1, "window_s": 30}}})
    admin(sim_url, "faults", {"faults": [{"kind": "503", "end_s": 0.3}]})
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    time.sleep(0.35)
    client.models.generate_content(model=TEXT_MODEL, contents="the 503 consumed no quota")


def test_bad_fault_list_is_400(sim_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        admin(sim_url, "faults", {"faults": [{"kind": "teapot"}]})
    assert caught.value.code == 400


@pytest.fixture
def faulty_sim(tmp_path: Path) -> Iterator[services.Service]:
    config = {"api_keys": [SIM_TEST_KEY], "defaults": {"latency_ms": 5, "jitter_ms": 0},
              "faults": [{"kind": "503", "model": TEXT_MODEL, "start_s": 0, "end_s": 3600}]}
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(config))
    svc = services.start_sim(path, workdir=tmp_path)
    yield svc
    svc.stop()


def test_config_faults_and_reset_restores_them(faulty_sim: services.Service) -> None:
    client = make_client(faulty_sim.url)
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=TEXT_MODEL, contents="x")
    admin(faulty_sim.url, "faults", {"faults": []})
    client.models.generate_content(model=TEXT_MODEL, contents="cleared")
    admin(faulty_sim.url, "reset", {})
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=TEXT_MODEL, contents="back")
    faulty_sim.stop()
    reasons = [r["reason"] for r in read_jsonl(faulty_sim.workdir / "requests.jsonl")]
    assert reasons == ["fault:503", "ok", "fault:503"]


def test_hung_thread_is_freed_when_the_client_gives_up(sim_url: str) -> None:
    admin(sim_url, "faults", {"faults": [{"kind": "hang"}]})
    impatient = make_client(sim_url, timeout_ms=300)
    for _ in range(3):  # each times out, then the client closes that connection
        with pytest.raises(httpx2.TimeoutException):
            impatient.models.generate_content(model=TEXT_MODEL, contents="x")
    impatient.close()
    admin(sim_url, "faults", {"faults": []})
    deadline = time.monotonic() + 3
    while admin(sim_url, "health")["hanging"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert admin(sim_url, "health")["hanging"] == 0  # not held for the default 600 s
