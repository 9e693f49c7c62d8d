"""Concurrency, the request log and /_sim/stats agreeing with what was sent, and secrecy of the API key."""

from __future__ import annotations

import asyncio
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from genpool.devstack import services
from tests.conftest import SIM_TEST_KEY, read_jsonl
from tests.conftest import sim_admin as admin

pytestmark = pytest.mark.integration

IN_FLIGHT = 200
LIMITS = httpx2.Limits(max_connections=256, max_keepalive_connections=256)


def log_lines(svc: services.Service, model: str, expected: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The request-log lines for `model`, waiting for the once-a-second flush."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [r for r in read_jsonl(svc.workdir / "requests.jsonl") if r["model"] == model]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_200_concurrent_sdk_calls_share_one_client(sim_url: str) -> None:
    model = "load-test-model"  # an id only this test uses, served because it is listed at run time
    admin(sim_url, "models", {"models": {model: {"latency_ms": 1000, "jitter_ms": 0}}})
    client = genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(
        base_url=sim_url, timeout=30_000, client_args={"limits": LIMITS}))
    prompts = [f"concurrent prompt {i}" for i in range(IN_FLIGHT)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        texts = list(pool.map(lambda p: client.models.generate_content(model=model, contents=p).text, prompts))
    elapsed_s = time.monotonic() - started
    assert all(f"echo: {p} --" in (t or "") for p, t in zip(prompts, texts, strict=True))
    assert elapsed_s < 8.0, f"{IN_FLIGHT} calls of 1 s each took {elapsed_s:.1f} s: not concurrent"
    stats = admin(sim_url, "stats")["models"][model]
    assert stats["by_status"] == {"200": IN_FLIGHT}
    assert stats["peak_window"]["requests"] == IN_FLIGHT


def test_200_concurrent_async_calls(sim_url: str) -> None:
    admin(sim_url, "models", {"defaults": {"latency_ms": 500, "jitter_ms": 0}})
    client = genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(
        base_url=sim_url, timeout=30_000, async_client_args={"limits": LIMITS}))

    async def run() -> list[str | None]:
        calls = [client.aio.models.generate_content(model="gemini-3.5-flash", contents=f"async {i}")
                 for i in range(IN_FLIGHT)]
        return [r.text for r in await asyncio.gather(*calls)]

    started = time.monotonic()
    texts = asyncio.run(run())
    assert time.monotonic() - started < 6.0
    assert all(f"echo: async {i} --" in (t or "") for i, t in enumerate(texts))


def test_request_log_and_stats_match_what_was_sent(sim_service: services.Service, sim_url: str) -> None:
    model = "log-test-model"
    admin(sim_url, "models", {"models": {model: {"rpm": 5, "window_s": 30}}})
    client = genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(base_url=sim_url, timeout=10_000))
    prompts = [f"log prompt number {i} " + "y" * i for i in range(7)]
    statuses = []
    for prompt in prompts:
        try:
            client.models.generate_content(model=model, contents=prompt)
            statuses.append(200)
        except errors.ClientError as exc:
            statuses.append(exc.code)
    assert statuses == [200] * 5 + [429] * 2
    lines = log_lines(sim_service, model, len(prompts))
    assert [line["status"] for line in lines] == statuses
    assert [line["reason"] for line in lines] == ["ok"] * 5 + ["quota:rpm"] * 2
    assert [line["prompt_tokens"] for line in lines] == [math.ceil(len(p) / 4) for p in prompts]
    assert set(lines[0]) == {"t", "model", "status", "reason", "prompt_tokens", "output_tokens", "images",
                             "latency_ms"}
    stats = admin(sim_url, "stats")["models"][model]
    assert stats["requests"] == 7 and stats["by_status"] == {"200": 5, "429": 2}
    assert stats["quota_429"] == {"rpm": 2, "tpm": 0, "ipm": 0, "rpd": 0}
    assert stats["prompt_tokens"] == sum(line["prompt_tokens"] for line in lines[:5])
    assert stats["output_tokens"] == sum(line["output_tokens"] for line in lines)
    assert sum(stats["ok_per_s"].values()) == 5
    assert stats["window"]["requests"] == stats["peak_window"]["requests"] == 5
    assert stats["limits"]["rpm"] == 5 and stats["window_s"] == 30


def test_runtime_latency_override(sim_url: str) -> None:
    admin(sim_url, "models", {"models": {"gemini-2.5-flash": {"latency_ms": 400, "jitter_ms": 0}}})
    client = genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(base_url=sim_url, timeout=10_000))
    started = time.monotonic()
    client.models.generate_content(model="gemini-2.5-flash", contents="slow model")
    assert time.monotonic() - started >= 0.4
    view = admin(sim_url, "models")["models"]["gemini-2.5-flash"]
    assert view["latency_ms"] == 400


def test_key_never_logged_or_printed(sim_service: services.Service, sim_url: str) -> None:
    model = "secret-test-model"
    admin(sim_url, "models", {"models": {model: {}}})
    client = genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(base_url=sim_url, timeout=10_000))
    client.models.generate_content(model=model, contents="secret check")
    wrong = genai.Client(api_key="wrong-secret-key-42", http_options=types.HttpOptions(base_url=sim_url))
    with pytest.raises(errors.ClientError):
        wrong.models.generate_content(model=model, contents="secret check")
    lines = log_lines(sim_service, model, 2)
    assert [line["reason"] for line in lines] == ["ok", "bad_key"]
    stats_text = json.dumps(admin(sim_url, "stats"))
    for path in (sim_service.workdir / "requests.jsonl", sim_service.workdir / "sim.log"):
        text = Path(path).read_text()
        assert SIM_TEST_KEY not in text and "wrong-secret-key-42" not in text
        assert "secret check" not in text  # nor the prompt
    assert SIM_TEST_KEY not in stats_text and "wrong-secret-key-42" not in stats_text
    assert "genpool sim listening on http://127.0.0.1:" in (sim_service.workdir / "sim.log").read_text()
