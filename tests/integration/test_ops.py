"""`genpool stats` and `genpool health` over the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def genpool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GENPOOL_", "S3_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "genpool.cli.main", *args], env={**clean, **env},
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
    stack.workers.wait_registered(stack.env["REDIS_URL"], 1)  # health counts live workers
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

    from genpool.ops.prometheus import RedisCollector

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


# --- a run with known outcomes: a fallback on a 429, cooldown skips, a 404 that fails a job ---------------

PRIMARY, SECOND, PRO = "gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-pro-preview"


def run_known_outcomes(stack) -> list:
    """Five text jobs, one at a time: PRIMARY answers once then its daily quota answers 429 (the fleet cools it
    down until Pacific midnight, later jobs skip it for SECOND); a job pinned to the retired PRO fails."""
    stack.sim.models({PRIMARY: {"rpd": 1}, PRO: {"retired": True}})
    stack.workers.start(1, concurrency=1)
    records = [stack.pool.submit({"kind": "text", "prompt": f"known {i}"}).wait(timeout_s=30) for i in range(4)]
    pinned = {"kind": "text", "prompt": "pinned", "model": PRO, "allow_fallback": False}
    records.append(stack.pool.submit(pinned).wait(timeout_s=30))
    assert [r.model_used for r in records] == [PRIMARY, SECOND, SECOND, SECOND, None], records
    assert [a.outcome for a in records[1].attempt_log] == ["rate_limited", "ok"], records[1].attempt_log
    assert records[4].status == "failed" and records[4].error.type == "all_models_failed", records[4]
    return records


def calls_to(records, model: str, outcome: str | None = None) -> int:
    return sum(1 for r in records for a in r.attempt_log
               if a.model == model and a.attempt > 0 and outcome in (None, a.outcome))


def skips(records, model: str, reason: str) -> int:
    return sum(1 for r in records for a in r.attempt_log if a.model == model and a.outcome == f"skipped:{reason}")


def test_stats_json_shows_429s_failures_state_limiter_and_queues(stack):
    records = run_known_outcomes(stack)
    out = genpool(stack.env, "stats", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    primary, second, pro = (data["models"][m] for m in (PRIMARY, SECOND, PRO))
    assert (primary["requests"], primary["outcome:ok"], primary["rate_limited"], primary["errors"]) == (2, 1, 1, 0)
    assert primary["skipped:no_capacity"] == skips(records, PRIMARY, "no_capacity") >= 2  # jobs 3, 4: cooled down
    assert (second["requests"], second["outcome:ok"], second["rate_limited"]) == (3, 3, 0)
    assert (pro["requests"], pro["outcome:model_not_found"], pro["errors"]) == (1, 1, 1)
    assert data["fallbacks"] == {f"{PRIMARY}->{SECOND}": 3}
    assert data["fallbacks_by_kind"] == {"text": {f"{PRIMARY}->{SECOND}": 3}}
    assert data["failures"] == {"all_models_failed": 1}
    text = data["kinds"]["text"]
    assert (text["requests"], text["finished"], text["failed"], text["outcome:rate_limited"]) == (6, 4, 1, 1)
    assert text["failures:all_models_failed"] == 1
    for model, m in ((PRIMARY, primary), (SECOND, second), (PRO, pro)):
        assert m["latency"]["count"] == calls_to(records, model)
        assert m["latency"]["buckets"]["+Inf"] == calls_to(records, model)
        waited = sum(a.wait_s for r in records for a in r.attempt_log if a.model == model)
        assert m.get("limiter_wait_seconds_total", 0.0) == pytest.approx(waited, abs=1e-3)
    now = data["now_s"]
    assert primary["state"]["state"] == "closed" and primary["state"]["cooldown_until_s"] > now
    assert pro["state"]["state"] == "down" and now < pro["state"]["until_s"] <= now + 3601
    assert second["state"] == {"state": "closed", "until_s": None, "reason": "", "cooldown_until_s": None}
    # the limiter's record: SECOND's starts, in the trailing minute and today, against the catalog's limits
    window = second["limiter"]["window"]
    assert window["rpd"] == {"used": calls_to(records, SECOND), "effective": 10000, "limit": 10000}
    assert window["rpm"] == {"used": calls_to(records, SECOND), "effective": 1000, "limit": 1000}
    assert second["limiter"]["override"] == {} and second["limiter"]["ahead_s"] == 0
    assert data["queues"] == {"genpool-high": 0, "genpool-default": 0, "genpool-low": 0}


def test_prometheus_gauges_for_state_limiter_and_queues(stack):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from genpool.ops.prometheus import RedisCollector
    from genpool.ops.snapshot import catalog_limits
    from genpool.shared.catalog import load_catalog

    records = run_known_outcomes(stack)
    catalog = load_catalog(stack.settings)
    registry = CollectorRegistry()
    registry.register(RedisCollector(stack.redis, catalog.models, catalog_limits(catalog)))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("genpool_requests_total", kind="text", model=PRIMARY, outcome="rate_limited") == 1
    assert value("genpool_requests_total", kind="text", model=PRO, outcome="model_not_found") == 1
    assert value("genpool_requests_total", kind="text", model=SECOND, outcome="ok") == 3
    assert value("genpool_fallbacks_total", kind="text", to=SECOND, **{"from": PRIMARY}) == 3
    assert value("genpool_job_failures_total", kind="text", error="all_models_failed") == 1
    assert value("genpool_models_skipped_total", model=PRIMARY, reason="no_capacity") == skips(records, PRIMARY,
                                                                                             "no_capacity")
    assert value("genpool_request_latency_seconds_count", model=PRIMARY) == calls_to(records, PRIMARY)
    assert value("genpool_cost_usd_total", kind="text", model=SECOND) == pytest.approx(
        sum(r.cost_usd for r in records if r.model_used == SECOND))
    for model, state in ((PRIMARY, "closed"), (SECOND, "closed"), (PRO, "down")):
        assert [s for s in ("closed", "open", "half-open", "down") if value("genpool_model_state", model=model,
                                                                            state=s) == 1] == [state]
    assert value("genpool_model_unavailable_until_timestamp_seconds", model=PRO) > time.time()
    assert value("genpool_model_unavailable_until_timestamp_seconds", model=SECOND) == 0
    assert value("genpool_model_cooldown_until_timestamp_seconds", model=PRIMARY) > time.time()
    assert value("genpool_ratelimit_window_used", model=SECOND, dimension="rpd") == calls_to(records, SECOND)
    assert value("genpool_ratelimit_window_used", model=SECOND, dimension="rpm") == calls_to(records, SECOND)
    assert value("genpool_ratelimit_effective_limit", model=SECOND, dimension="rpm") == 1000
    assert value("genpool_ratelimit_limit", model=SECOND, dimension="tpm") == 1_000_000
    assert value("genpool_ratelimit_limit", model="gemini-3.1-flash-image", dimension="ipm") == 100
    assert value("genpool_queue_depth", queue="genpool-default") == 0


# --- RQ's own tools on genpool's queues -------------------------------------------------------------------

def _queued(stack, count: int, priority: str = "default") -> list[str]:
    return [stack.pool.submit({"kind": "text", "prompt": f"waits {i}"}, priority=priority).id for i in range(count)]


def test_rq_info_shows_genpool_queues_and_their_jobs(stack):
    _queued(stack, 3)
    _queued(stack, 1, "high")
    rq = [str(Path(sys.executable).with_name("rq")), "info", "--url", stack.env["REDIS_URL"], "--serializer", "json"]
    out = subprocess.run([*rq, "--only-queues", "--raw", "genpool-default", "genpool-high", "genpool-low"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "queue genpool-default 3" in out.stdout and "queue genpool-high 1" in out.stdout, out.stdout
    assert "queue genpool-low 0" in out.stdout, out.stdout
    data = json.loads(genpool(stack.env, "stats", "--json").stdout)
    assert data["queues"] == {"genpool-high": 1, "genpool-default": 3, "genpool-low": 0}


def test_rq_dashboard_is_an_optional_extra_and_reads_genpool_queues(stack, tmp_path):
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("rq-dashboard") for d in project["optional-dependencies"]["dashboard"])
    assert "rq-dashboard" not in (root / "requirements.txt").read_text()
    procfile = dict(line.split(":", 1) for line in (root / "Procfile").read_text().splitlines() if ":" in line)
    assert procfile["dashboard"].split()[0] == "rq-dashboard" and "--json" in procfile["dashboard"].split()
    pytest.importorskip("rq_dashboard")
    jobs = _queued(stack, 2)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("rq-dashboard")), "--bind", "127.0.0.1",
                             "--port", str(port), "--redis-url", stack.env["REDIS_URL"], "--json"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "dashboard.log").open("w"))
    try:
        queues = {q["name"]: q["count"] for q in get_json(f"http://127.0.0.1:{port}/0/data/queues.json")["queues"]}
        assert queues["genpool-default"] == 2, queues
        job = get_json(f"http://127.0.0.1:{port}/0/data/job/{jobs[0]}.json")
        assert job["id"] == jobs[0] and job["origin"] == "genpool-default", job
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout_s: float = 20.0) -> dict:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return json.loads(reply.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_limiter_wait_is_counted_per_model_and_kind(stack):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from genpool.ops.prometheus import RedisCollector
    from genpool.shared.ratelimit import RedisLimiter

    # Two requests per 0.5 s window on PRIMARY: of six jobs at once, two start now and the next ones wait
    # for their reservation (0.5 s, 1 s ahead); any that would wait longer than the spill-over bound go on
    # to the next model. Queued before the worker starts, so the six arrive at the limiter together.
    RedisLimiter(stack.redis).set_limits(PRIMARY, rpm=2, tpm=0, rpd=0, window_s=0.5, guard_ms=0)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    requests = [{"kind": "json", "prompt": f"w{i}", "json_schema": schema} if i % 2 else
                {"kind": "text", "prompt": f"w{i}"} for i in range(6)]
    handles = stack.pool.submit_many(requests)
    stack.workers.start(1, concurrency=6)
    records = [h.wait(timeout_s=30) for h in handles]
    assert all(r.status == "finished" for r in records), [(r.kind, r.error) for r in records]
    attempts = [(r.kind, a) for r in records for a in r.attempt_log]
    waited_kind = {k: sum(a.wait_s for kind, a in attempts if kind == k) for k in ("text", "json")}
    waited_model = {m: sum(a.wait_s for _, a in attempts if a.model == m) for m in (PRIMARY, SECOND)}
    assert waited_model[PRIMARY] > 0, attempts  # the scenario must make a job wait
    data = json.loads(genpool(stack.env, "stats", "--json").stdout)
    for model, seconds in waited_model.items():
        assert data["models"][model].get("limiter_wait_seconds_total", 0.0) == pytest.approx(seconds, abs=1e-3)
    for kind, seconds in waited_kind.items():
        assert data["kinds"][kind].get("limiter_wait_seconds_total", 0.0) == pytest.approx(seconds, abs=1e-3)
    registry = CollectorRegistry()
    registry.register(RedisCollector(stack.redis))
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name == "genpool_limiter_wait_seconds_total":
                samples[s.labels["kind"]] = samples.get(s.labels["kind"], 0.0) + s.value
    for kind, seconds in waited_kind.items():
        assert samples.get(kind, 0.0) == pytest.approx(seconds, abs=1e-3)
