"""Retries and fallback over the real stack: redis-server, moto S3, the Gemini simulator, worker processes.

Each test shapes the simulator (faults, quotas, retired models) through its admin API and, where it needs
fast timeouts, points the workers at a shrunken copy of the default catalog (GENPOOL_MODELS_FILE).
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from genpool.shared.storage import unpack_metadata

pytestmark = pytest.mark.integration

PRIMARY, SECOND, THIRD = "gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite"
TEXT_CHAIN = [PRIMARY, SECOND, THIRD]
IMAGE_HEAD, IMAGE_SECOND = "gemini-3.1-flash-image", "gemini-3.1-flash-lite-image"
DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "shared" / "presets" / "default.toml"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
          "required": ["title", "score"]}


# --- helpers ----------------------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_catalog(stack, overrides: dict[str, dict[str, Any]]) -> Path:
    """A copy of the default catalog with per-model overrides, used by the workers started next."""
    data = tomllib.loads(DEFAULT_CATALOG.read_text())
    for model, fields in overrides.items():
        data["models"][model].update(fields)
    lines = ["[defaults]"] + [f"{k} = {_toml_value(v)}" for k, v in data["defaults"].items()]
    for model, body in data["models"].items():
        lines += ["", f'[models."{model}"]'] + [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    lines += ["", "[chains]"] + [f"{k} = {_toml_value(v)}" for k, v in data["chains"].items()]
    path = stack.workdir / "catalog.toml"
    path.write_text("\n".join(lines) + "\n")
    stack.env["GENPOOL_MODELS_FILE"] = str(path)
    return path


def model_stats(stack, model: str) -> dict[str, Any]:
    return stack.sim.stats()["models"].get(model, {"requests": 0, "by_status": {}, "by_reason": {}})


def requests_to(stack, model: str) -> int:
    return int(model_stats(stack, model)["requests"])


def total_requests(stack) -> int:
    return sum(int(m["requests"]) for m in stack.sim.stats()["models"].values())


def warm_up(stack) -> None:
    """One job end to end, so the workers are up before a time-windowed fault starts; then clean counters."""
    record = stack.pool.submit({"kind": "text", "prompt": "warm up"}).wait(timeout_s=20)
    assert record.status == "finished", record.error
    stack.sim.reset()


def wait_all(handles, timeout_s: float):
    records = [h.wait(timeout_s=timeout_s) for h in handles]
    return records


def read_body(stack, record) -> bytes:
    return stack.s3.get_object(Bucket=stack.bucket, Key=record.storage.key)["Body"].read()


def logs_hint(stack) -> str:
    return stack.workers.logs()[-4000:]


# --- scenarios --------------------------------------------------------------------------------------

def test_primary_503_burst_then_recovery(stack):
    stack.env["GENPOOL_JOB_DEADLINE_S"] = "30"
    stack.workers.start(1, concurrency=2)
    warm_up(stack)
    # One job during the burst: at most 1 + max_retries (3) failures, under the breaker's threshold of 5.
    stack.sim.faults([{"kind": "503", "model": PRIMARY, "start_s": 0, "end_s": 2.0, "rate": 1.0}])
    burst_started = time.monotonic()
    during = stack.pool.submit({"kind": "text", "prompt": "during the burst"}).wait(timeout_s=20)
    assert during.status == "finished", (during.error, logs_hint(stack))
    assert during.model_used in TEXT_CHAIN
    assert any(a.model == PRIMARY and a.outcome == "server_error" for a in during.attempt_log), during.attempt_log
    if during.model_used == PRIMARY:
        assert during.fallbacks_used == 0 and during.attempts >= 2
    else:
        assert during.fallbacks_used >= 1
    assert stack.tags(during.storage.key)["model"] == during.model_used

    time.sleep(max(0.0, 2.3 - (time.monotonic() - burst_started)))
    after = wait_all([stack.pool.submit({"kind": "text", "prompt": f"after {i}"}) for i in range(4)], 15)
    for record in after:
        assert record.status == "finished", record.error
        assert record.model_used == PRIMARY and record.fallbacks_used == 0, record.attempt_log
        assert record.attempts == 1
    assert model_stats(stack, PRIMARY)["by_status"].get("503", 0) >= 1


def test_retired_primary_is_skipped_fleet_wide(stack):
    stack.workers.start(1, concurrency=4)
    stack.sim.models({PRIMARY: {"retired": True}})
    first = stack.pool.submit({"kind": "text", "prompt": "first after retirement"}).wait(timeout_s=20)
    assert first.status == "finished", (first.error, logs_hint(stack))
    assert first.model_used == SECOND and first.fallbacks_used >= 1
    assert first.models_tried == [PRIMARY, SECOND]
    assert [a.outcome for a in first.attempt_log if a.model == PRIMARY] == ["model_not_found"]
    assert stack.tags(first.storage.key) == {"model": SECOND, "kind": "text"}

    later = wait_all([stack.pool.submit({"kind": "text", "prompt": f"later {i}"}) for i in range(19)], 20)
    for record in later:
        assert record.status == "finished", record.error
        assert record.model_used == SECOND and record.fallbacks_used == 1
        assert PRIMARY not in record.models_tried, record.attempt_log
        assert any(a.model == PRIMARY and a.outcome.startswith("skipped") for a in record.attempt_log)
        assert stack.tags(record.storage.key)["model"] == SECOND
    assert requests_to(stack, PRIMARY) == 1
    assert requests_to(stack, SECOND) == 20


def test_hang_times_out_then_falls_back(stack):
    write_catalog(stack, {PRIMARY: {"timeout_s": 1.5, "max_retries": 0}})
    stack.env["GENPOOL_JOB_DEADLINE_S"] = "30"
    stack.workers.start(1, concurrency=2)
    warm_up(stack)
    stack.sim.faults([{"kind": "hang", "model": PRIMARY, "delay_s": 20}])
    started = time.monotonic()
    record = stack.pool.submit({"kind": "text", "prompt": "the primary hangs"}).wait(timeout_s=20)
    elapsed = time.monotonic() - started
    assert record.status == "finished", (record.error, logs_hint(stack))
    assert record.model_used == SECOND and record.fallbacks_used == 1
    primary = [a for a in record.attempt_log if a.model == PRIMARY]
    assert [a.outcome for a in primary] == ["timeout"], record.attempt_log
    assert 1.0 <= primary[0].latency_s < 4.0
    assert elapsed < 8.0
    assert stack.tags(record.storage.key)["model"] == SECOND


def test_429_retry_info_is_honoured(stack, sim_service):
    # genpool's limiter does not know the primary's quota (rpm 0 = unlimited), so the simulator answers 429.
    write_catalog(stack, {PRIMARY: {"rpm": 0, "tpm": 0, "rpd": 0}})
    stack.env["GENPOOL_JOB_DEADLINE_S"] = "30"
    stack.workers.start(1, concurrency=4)
    warm_up(stack)
    window_s = 5
    stack.sim.models({PRIMARY: {"rpm": 2, "window_s": window_s}})
    log_path = Path(sim_service.workdir) / "requests.jsonl"
    t0 = time.time()
    handles = [stack.pool.submit({"kind": "text", "prompt": f"quota {i}"}) for i in range(4)]
    records = wait_all(handles, 25)
    for record in records:
        assert record is not None and record.status == "finished", (record and record.error, logs_hint(stack))
        assert record.model_used in TEXT_CHAIN
    time.sleep(1.3)  # the simulator flushes its request log every second
    log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    primary = sorted((r for r in log if r["model"] == PRIMARY and r["t"] >= t0 - 0.01), key=lambda r: r["t"])
    ok = [r for r in primary if r["status"] == 200]
    limited = [r for r in primary if r["status"] == 429]
    assert len(limited) >= 1, primary  # the scenario must actually have produced a 429
    assert all(r["reason"] == "quota:rpm" for r in limited)
    # The window frees at the first admitted request + window_s; RetryInfo says (rounded up) as much.
    frees_at = ok[0]["t"] + window_s
    first_429 = limited[0]["t"]
    # Only the jobs in flight together with the first 429 may hit the model before the window frees:
    # a retry sooner than RetryInfo would show up as a request in (first 429 + 0.5 s, window frees).
    early = [r for r in primary if first_429 + 0.5 < r["t"] < frees_at - 0.05]
    assert early == [], primary
    # Each retry waits at least the RetryInfo delay the simulator sent (whole seconds, rounded up).
    delays = [math.ceil(frees_at - r["t"]) for r in limited]
    earliest_retry = min(r["t"] + d for r, d in zip(limited, delays, strict=True))
    after_429 = [r for r in primary if r["t"] > limited[-1]["t"]]
    assert all(r["t"] >= earliest_retry - 0.05 for r in after_429), (primary, delays)
    # Every 429 was answered to a distinct job: none was retried into a second 429.
    assert len(limited) <= len(records) - 2
    retried_on_primary = [r for r in records
                          if [a.outcome for a in r.attempt_log if a.model == PRIMARY][:1] == ["rate_limited"]]
    for record in retried_on_primary:
        later = [a for a in record.attempt_log if a.model == PRIMARY][1:]
        for attempt in later:
            if attempt.attempt > 0:
                assert attempt.outcome == "ok", record.attempt_log


def test_a_key_revoked_while_workers_run_fails_fast_without_fallback(stack):
    # A wrong key at start is refused by the worker itself (test_failfast.py); one revoked later meets the
    # failure policy: auth fails the job at once, on its first model.
    stack.workers.start(1, concurrency=2)
    assert stack.pool.submit({"kind": "text", "prompt": "before"}).wait(timeout_s=20).status == "finished"
    stack.sim.reset()
    stack.sim.call("keys", {"api_keys": ["a-key-the-worker-does-not-have"]})
    started = time.monotonic()
    record = stack.pool.submit({"kind": "text", "prompt": "who am i"}).wait(timeout_s=20)
    assert record.status == "failed"
    assert record.error is not None and record.error.type == "auth", record.error
    assert "API key" in record.error.message
    assert record.models_tried == [PRIMARY] and record.attempts == 1, record.attempt_log
    assert total_requests(stack) == 1
    assert requests_to(stack, PRIMARY) == 1
    assert record.duration_s < 5.0 and time.monotonic() - started < 15
    assert len(stack.objects()) == 1  # the job before the revocation's


def test_blocked_prompt_fails_without_fallback(stack):
    stack.workers.start(1, concurrency=2)
    record = stack.pool.submit({"kind": "text", "prompt": "tell me [[block]] something"}).wait(timeout_s=20)
    assert record.status == "failed"
    assert record.error is not None and record.error.type == "blocked", record.error
    assert "blocked" in record.error.message
    assert record.models_tried == [PRIMARY] and record.attempts == 1
    assert requests_to(stack, PRIMARY) == 1
    assert requests_to(stack, SECOND) == 0 and requests_to(stack, THIRD) == 0
    assert stack.objects() == []


def test_max_tokens_text_keeps_answer_json_fails(stack):
    stack.workers.start(1, concurrency=2)
    text = stack.pool.submit({"kind": "text", "prompt": "a long story [[max_tokens]] please"}).wait(timeout_s=20)
    assert text.status == "finished", text.error
    assert text.finish_reason == "MAX_TOKENS"
    assert text.model_used == PRIMARY and text.fallbacks_used == 0
    assert read_body(stack, text)  # the truncated answer is kept
    head = stack.s3.head_object(Bucket=stack.bucket, Key=text.storage.key)
    assert unpack_metadata(head["Metadata"])["finish-reason"] == "MAX_TOKENS"

    js = stack.pool.submit({"kind": "json", "prompt": "rate it [[max_tokens]]", "json_schema": SCHEMA}).wait(
        timeout_s=20)
    # Policy (worker/answers.py): a JSON answer cut short by MAX_TOKENS fails with the reason, no fallback;
    # only if the cut answer still parsed and validated would the job finish.
    if js.status == "failed":
        assert js.error is not None and js.error.type == "max_tokens", js.error
        assert "max_output_tokens" in js.error.message
        assert js.models_tried == [PRIMARY] and js.attempts == 1
    else:
        assert js.finish_reason == "MAX_TOKENS"
        assert isinstance(json.loads(read_body(stack, js)), dict)
    assert requests_to(stack, SECOND) == 0 and requests_to(stack, THIRD) == 0


def test_all_models_down_fails_listing_each_model(stack):
    write_catalog(stack, {m: {"max_retries": 1} for m in TEXT_CHAIN})
    stack.env["GENPOOL_JOB_DEADLINE_S"] = "30"
    stack.workers.start(1, concurrency=2)
    stack.sim.faults([{"kind": "503", "model": "*"}])
    record = stack.pool.submit({"kind": "text", "prompt": "nobody answers"}).wait(timeout_s=25)
    assert record.status == "failed", record
    assert record.error is not None and record.error.type == "all_models_failed", record.error
    for model in TEXT_CHAIN:
        assert model in record.error.message, record.error.message
    assert record.models_tried == TEXT_CHAIN
    for model in TEXT_CHAIN:
        assert requests_to(stack, model) == 2  # 1 + max_retries
    assert stack.objects() == []


def test_image_head_retired_falls_back_to_lite_image(stack):
    stack.workers.start(1, concurrency=2)
    stack.sim.faults([{"kind": "404", "model": IMAGE_HEAD}])
    record = stack.pool.submit({"kind": "image", "prompt": "a lighthouse", "preset": "video_background"}).wait(
        timeout_s=25)
    assert record.status == "finished", (record.error, logs_hint(stack))
    assert record.model_used == IMAGE_SECOND and record.fallbacks_used == 1
    assert [a.outcome for a in record.attempt_log if a.model == IMAGE_HEAD] == ["model_not_found"]
    body = read_body(stack, record)
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert stack.tags(record.storage.key) == {"model": IMAGE_SECOND, "kind": "image"}
    assert requests_to(stack, IMAGE_HEAD) == 1


def test_429_with_long_retry_info_falls_back_and_cools_the_fleet(stack):
    # RetryInfo (~20 s) is beyond what a job waits on one model (GENPOOL_MAX_LIMITER_WAIT_S, 5 s): fall back at
    # once, and the 429 cools the model down fleet-wide so later jobs skip it instead of asking again.
    write_catalog(stack, {PRIMARY: {"rpm": 0, "tpm": 0, "rpd": 0}})
    stack.env["GENPOOL_JOB_DEADLINE_S"] = "30"
    stack.workers.start(1, concurrency=2)
    warm_up(stack)
    stack.sim.models({PRIMARY: {"rpm": 1, "window_s": 20}})
    first = stack.pool.submit({"kind": "text", "prompt": "takes the only slot"}).wait(timeout_s=15)
    assert first.status == "finished" and first.model_used == PRIMARY, first
    started = time.monotonic()
    second = stack.pool.submit({"kind": "text", "prompt": "gets a 429"}).wait(timeout_s=15)
    assert second.status == "finished", (second.error, logs_hint(stack))
    assert second.model_used == SECOND and second.fallbacks_used == 1, second.attempt_log
    assert [a.outcome for a in second.attempt_log if a.model == PRIMARY] == ["rate_limited"]
    assert time.monotonic() - started < 5.0  # no waiting out the 20 s RetryInfo
    later = wait_all([stack.pool.submit({"kind": "text", "prompt": f"later {i}"}) for i in range(5)], 15)
    for record in later:
        assert record.status == "finished", record.error
        assert record.model_used == SECOND, record.attempt_log
        assert PRIMARY not in record.models_tried, record.attempt_log
    stats = model_stats(stack, PRIMARY)
    assert stats["requests"] == 2 and stats["quota_429"]["rpm"] == 1, stats


def test_daily_quota_429_falls_back_for_the_day(stack):
    write_catalog(stack, {PRIMARY: {"rpm": 0, "tpm": 0, "rpd": 0}})
    stack.workers.start(1, concurrency=2)
    warm_up(stack)
    stack.sim.models({PRIMARY: {"rpd": 1}})
    first = stack.pool.submit({"kind": "text", "prompt": "last request today"}).wait(timeout_s=15)
    assert first.status == "finished" and first.model_used == PRIMARY, first
    second = stack.pool.submit({"kind": "text", "prompt": "over the daily quota"}).wait(timeout_s=15)
    assert second.status == "finished", (second.error, logs_hint(stack))
    assert second.model_used == SECOND, second.attempt_log
    # scope "day": no retry on the same model (its quota resets at Pacific midnight)
    assert [a.outcome for a in second.attempt_log if a.model == PRIMARY] == ["rate_limited"]
    later = wait_all([stack.pool.submit({"kind": "text", "prompt": f"later {i}"}) for i in range(3)], 15)
    for record in later:
        assert record.status == "finished" and record.model_used == SECOND, record.attempt_log
    stats = model_stats(stack, PRIMARY)
    assert stats["requests"] == 2 and stats["quota_429"]["rpd"] == 1, stats


def test_repeated_503s_open_the_breaker_fleet_wide(stack):
    # 5 transient failures within 30 s open the breaker: later jobs skip the primary without calling it.
    write_catalog(stack, {PRIMARY: {"max_retries": 1}})
    stack.workers.start(2, concurrency=2)
    warm_up(stack)
    stack.sim.faults([{"kind": "503", "model": PRIMARY}])
    records = [stack.pool.submit({"kind": "text", "prompt": f"job {i}"}).wait(timeout_s=15) for i in range(6)]
    for record in records:
        assert record.status == "finished", record.error
        assert record.model_used == SECOND and record.fallbacks_used == 1
    # jobs 1-3 make 2 calls each; the 5th failure opens the breaker, so job 3 is cut short or skips it
    assert 5 <= requests_to(stack, PRIMARY) <= 6
    for record in records[3:]:
        assert PRIMARY not in record.models_tried, record.attempt_log
        assert any(a.model == PRIMARY and a.outcome.startswith("skipped") for a in record.attempt_log)



def test_connection_reset_is_retried_on_the_same_model(stack):
    stack.workers.start(1, concurrency=2)
    warm_up(stack)
    stack.sim.faults([{"kind": "reset", "model": PRIMARY, "start_s": 0, "end_s": 0.3}])
    record = stack.pool.submit({"kind": "text", "prompt": "reset once"}).wait(timeout_s=15)
    assert record.status == "finished", (record.error, logs_hint(stack))
    assert record.model_used == PRIMARY and record.fallbacks_used == 0, record.attempt_log
    outcomes = [a.outcome for a in record.attempt_log]
    assert outcomes[0] == "connection" and outcomes[-1] == "ok", outcomes


def test_job_deadline_bounds_the_chain(stack):
    # Every model hangs; each call is cut at its timeout and the whole job stops at its deadline.
    write_catalog(stack, {m: {"timeout_s": 2, "max_retries": 3} for m in TEXT_CHAIN})
    stack.workers.start(1, concurrency=2)
    stack.sim.faults([{"kind": "hang", "model": "*", "delay_s": 15}])
    record = stack.pool.submit({"kind": "text", "prompt": "nobody answers in time"}, deadline_s=5).wait(
        timeout_s=30)
    assert record.status == "failed", record
    assert record.error is not None and record.error.type == "all_models_failed", record.error
    # Unbounded, the chain would take 3 models x 4 calls x 2 s = 24 s; the deadline stops it near 5 s.
    # The bound sits far from both, so machine noise cannot flip it.
    assert record.duration_s < 12.0, (record.duration_s, record.attempt_log)
    assert all(a.outcome == "timeout" for a in record.attempt_log if a.attempt > 0), record.attempt_log
