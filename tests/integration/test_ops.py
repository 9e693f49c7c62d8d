"""`genpool stats` and `genpool health` over the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def genpool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GENPOOL_", "S3_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "producer.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_stats_counts_match_a_run_with_known_outcomes(stack):
    # The head model is retired: each job that reaches it calls it once (404) and falls back.
    stack.sim.models({"gemini-3.8-flash": {"retired": True}})
    stack.workers.start(1, concurrency=1)
    records = [stack.pool.submit({"kind": "text", "prompt": f"p{i}"}).wait(timeout_s=30) for i in range(4)]
    assert all(r.status == "finished" and r.model_used == "gemini-3.5-flash" for r in records)
    out = genpool(stack.env, "stats", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    primary_calls = sum(r.attempts - 1 for r in records)  # calls made to the retired model
    assert primary_calls == 1  # the 404 marked it down fleet-wide: later jobs skipped it
    assert data["models"]["gemini-3.8-flash"]["requests"] == primary_calls
    assert data["models"]["gemini-3.8-flash"]["outcome:model_not_found"] == primary_calls
    assert data["models"]["gemini-3.5-flash"]["outcome:ok"] == 4
    assert data["models"]["gemini-3.5-flash"]["tokens_in_total"] == sum(r.prompt_tokens for r in records)
    assert data["models"]["gemini-3.5-flash"]["cost_usd_total"] == pytest.approx(sum(r.cost_usd for r in records))
    assert data["fallbacks"] == {"gemini-3.8-flash->gemini-3.5-flash": 4}
    assert data["kinds"]["text"]["finished"] == 4


def test_health_passes_when_all_is_well(stack):
    stack.workers.start(1, concurrency=1)
    out = genpool(stack.env, "health", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["redis"]["ok"] and checks["s3"]["ok"]
    assert checks["model gemini-3.8-flash"]["ok"]


@pytest.mark.parametrize("change, failing", [
    ({"REDIS_URL": "redis://127.0.0.1:1/0", "GENPOOL_REDIS_TIMEOUT_S": "0.5"}, "redis"),
    ({"S3_BUCKET": "no-such-bucket-here"}, "s3"),
    ({"GEMINI_API_KEY": "wrong-key"}, "gemini key"),
])
def test_health_fails_with_a_clear_message(stack, change, failing):
    out = genpool({**stack.env, **change}, "health", "--json")
    assert out.returncode == 1
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert not checks[failing]["ok"] and checks[failing]["detail"]
    assert "wrong-key" not in out.stdout + out.stderr


def test_prometheus_text_shows_the_exact_counts(stack):
    from prometheus_client import CollectorRegistry, generate_latest

    from ops.prometheus import RedisCollector

    stack.sim.models({"gemini-3.8-flash": {"retired": True}})
    stack.workers.start(1, concurrency=1)
    records = [stack.pool.submit({"kind": "text", "prompt": f"q{i}"}).wait(timeout_s=30) for i in range(3)]
    assert all(r.status == "finished" for r in records)
    registry = CollectorRegistry()
    registry.register(RedisCollector(stack.redis))
    text = generate_latest(registry).decode()
    assert 'genpool_requests_total{kind="text",model="gemini-3.5-flash",outcome="ok"} 3.0' in text
    assert 'genpool_requests_total{kind="text",model="gemini-3.8-flash",outcome="model_not_found"} 1.0' in text
    assert 'genpool_fallbacks_total{from="gemini-3.8-flash",kind="text",to="gemini-3.5-flash"} 3.0' in text
    assert 'genpool_request_latency_seconds_count{model="gemini-3.5-flash"} 3.0' in text
    assert 'genpool_jobs_total{kind="text",model="gemini-3.5-flash",status="finished"} 3.0' in text
