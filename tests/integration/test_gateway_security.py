"""The gateway's door: bearer tokens (hashed at rest), per-token limits (429 + Retry-After), tokens see
only their own jobs, CORS off unless configured, errors without internals, health, readiness, docs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import pytest

from genpool.gateway.limits import utc_day
from genpool.gateway.tokens import TokenStore, digest
from genpool.shared import keys
from genpool.shared.settings import Settings
from tests.conftest import Stack
from tests.integration.gatewaykit import Api, ServerThread, make_token, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def server(stack: Stack) -> Iterator[ServerThread]:
    stack.workers.start(count=1, concurrency=4)
    with running_gateway(stack) as running:
        yield running


def test_tokens_are_stored_hashed_and_a_missing_wrong_or_revoked_token_gets_401(server: ServerThread,
                                                                                stack: Stack) -> None:
    token = make_token(stack.env["REDIS_URL"], "acme")
    stored = stack.redis.hgetall(keys.api_tokens())
    assert list(stored) == [digest(token).encode()] and token.encode() not in b"".join(stored.values())
    anonymous = httpx2.get(f"{server.url}/v1/jobs/{'0' * 32}", timeout=30)
    wrong = [httpx2.get(f"{server.url}/v1/jobs/{'0' * 32}", headers={"Authorization": value}, timeout=30)
             for value in (f"Basic {token}", "Bearer gpk_" + "x" * 43, "Bearer", token)]
    for reply in [anonymous, *wrong]:
        assert reply.status_code == 401 and reply.json()["code"] == "unauthorized"
    assert TokenStore(stack.redis).revoke("acme")
    revoked = httpx2.post(f"{server.url}/v1/jobs", json={"kind": "text", "prompt": "x"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert revoked.status_code == 401 and revoked.json()["message"] == "unknown or revoked token"


def test_a_token_sees_only_its_own_jobs(server: ServerThread, stack: Stack) -> None:
    alice = Api(server.url, make_token(stack.env["REDIS_URL"], "alice"))
    bob = Api(server.url, make_token(stack.env["REDIS_URL"], "bob"))
    job_id = alice.submit({"kind": "text", "prompt": "private"}).json()["id"]
    for path in ("", "/output", "/events"):  # before and after it finished
        assert bob.http.get(f"/v1/jobs/{job_id}{path}").status_code == 404
    alice.wait(job_id)
    for path in ("", "/output", "/events"):
        reply = bob.http.get(f"/v1/jobs/{job_id}{path}")
        assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert alice.http.get(f"/v1/jobs/{job_id}/output").status_code == 200
    alice.close()
    bob.close()


def test_over_the_requests_per_minute_is_429_with_retry_after(server: ServerThread, stack: Stack) -> None:
    api = Api(server.url, make_token(stack.env["REDIS_URL"], "slow", rpm=3))
    answers = [api.http.get(f"/v1/jobs/{'0' * 32}").status_code for _ in range(3)]
    assert answers == [404, 404, 404]
    limited = api.http.get(f"/v1/jobs/{'0' * 32}")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 20  # one request in 20 s at 3/min
    batch = api.submit([{"kind": "text", "prompt": "x"}] * 4)
    assert batch.status_code == 400 and "exceed this token's 3 requests per minute" in batch.json()["message"]
    api.close()


def test_over_the_days_budget_is_429_until_midnight_utc_and_spend_is_counted(server: ServerThread,
                                                                            stack: Stack) -> None:
    api = Api(server.url, make_token(stack.env["REDIS_URL"], "thrifty", usd_per_day=0.5))
    job_id = api.submit({"kind": "text", "prompt": "count my cost"}).json()["id"]
    cost = api.wait(job_id)["cost_usd"]
    spent_key = keys.account_spend("thrifty", utc_day(time.time()))
    assert float(stack.redis.get(spent_key) or 0) == pytest.approx(cost) and cost > 0
    stack.redis.set(spent_key, 0.5)
    over = api.submit({"kind": "text", "prompt": "one more"})
    assert over.status_code == 429 and over.json()["code"] == "budget_exhausted"
    until_midnight = 86_400 - time.time() % 86_400
    assert abs(int(over.headers["retry-after"]) - until_midnight) < 60
    assert api.http.get(f"/v1/jobs/{job_id}").status_code == 200  # reading is not spending
    api.close()


def test_cors_is_off_unless_configured(stack: Stack) -> None:
    token = make_token(stack.env["REDIS_URL"], "acme")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with running_gateway(stack) as plain:
        reply = httpx2.options(f"{plain.url}/v1/jobs", headers=preflight, timeout=30)
        assert "access-control-allow-origin" not in reply.headers
        got = httpx2.get(f"{plain.url}/healthz", headers={"Origin": "https://app.example"}, timeout=30)
        assert "access-control-allow-origin" not in got.headers
    with running_gateway(stack, cors_origins="https://app.example") as open_to_one:
        allowed = httpx2.options(f"{open_to_one.url}/v1/jobs", headers=preflight, timeout=30)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx2.options(f"{open_to_one.url}/v1/jobs", headers={**preflight, "Origin": "https://evil.example"},
                               timeout=30)
        assert "access-control-allow-origin" not in other.headers
        submitted = httpx2.post(f"{open_to_one.url}/v1/jobs", json={"kind": "text", "prompt": "x"}, timeout=30,
                                headers={"Origin": "https://app.example", "Authorization": f"Bearer {token}"})
        assert submitted.status_code == 202 and "location" in submitted.headers["access-control-expose-headers"].lower()


def test_health_readiness_docs_and_unknown_routes(server: ServerThread) -> None:
    assert httpx2.get(f"{server.url}/healthz", timeout=30).json() == {"status": "ok"}
    deadline = time.monotonic() + 30
    while (ready := httpx2.get(f"{server.url}/readyz", timeout=30).json()).get("workers", 0) < 1:
        assert time.monotonic() < deadline, ready  # the worker process registers itself
        time.sleep(0.1)
    assert ready["status"] == "ready"
    docs = httpx2.get(f"{server.url}/docs", timeout=30)
    assert docs.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in docs.text
    bundle = httpx2.get(f"{server.url}/docs-static/swagger-ui-bundle.js", timeout=30)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000  # served here, not from a CDN
    spec = httpx2.get(f"{server.url}/openapi.json", timeout=30).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/conversations/{conversation_id}/messages"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    missing = httpx2.get(f"{server.url}/v2/nothing", timeout=30)
    assert missing.status_code == 404 and missing.json() == {"code": "not_found", "message": "no such route"}
    wrong_method = httpx2.delete(f"{server.url}/v1/jobs", timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"


def test_an_unreachable_redis_is_503_without_internals(stack: Stack) -> None:
    from genpool.devstack.services import free_port

    port = free_port()  # nothing listens there
    broken = Settings.from_env({**stack.env, "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                                "GENPOOL_REDIS_TIMEOUT_S": "0.5"}, dotenv_path=None)
    server = ServerThread(broken, ServerThread.default_api()).start()
    try:
        reply = httpx2.post(f"{server.url}/v1/jobs", json={"kind": "text", "prompt": "x"}, timeout=30,
                            headers={"Authorization": "Bearer gpk_" + "a" * 43})
        assert reply.status_code == 503 and reply.json()["code"] == "unavailable"
        assert str(port) not in reply.text and "127.0.0.1" not in reply.text and "Error" not in reply.text
        assert int(reply.headers["retry-after"]) >= 1
        ready = httpx2.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    finally:
        server.stop()
