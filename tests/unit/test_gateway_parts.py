"""The gateway's parts without a server: settings, error lines, tokens, the admission and turn scripts (on
fakeredis's Lua), stream ids. The same scripts run against redis-server in the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from rq.job import Job

from genpool.gateway.app import describe
from genpool.gateway.errors import BudgetExhausted, Conflict, InvalidRequest, RateLimited
from genpool.gateway.hub import format_id, stream_id
from genpool.gateway.limits import Limits, seconds_to_utc_midnight, utc_day
from genpool.gateway.settings import ApiSettings
from genpool.gateway.tokens import TokenInfo, TokenStore, digest, well_formed
from genpool.gateway.turns import Turns
from genpool.shared import keys
from genpool.shared.errors import ConfigError, ValidationError


def test_settings_come_from_genpool_api_variables() -> None:
    api = ApiSettings.from_env({"GENPOOL_API_CORS_ORIGINS": "https://a.example, https://b.example",
                                "GENPOOL_API_RPM": "30", "GENPOOL_API_WAIT_S": "2.5"}, dotenv_path=None)
    assert api.cors_origins == ("https://a.example", "https://b.example") and api.rpm == 30 and api.wait_s == 2.5
    assert ApiSettings.from_env({}, dotenv_path=None).cors_origins == ()


@pytest.mark.parametrize(("env", "line"), [
    ({"GENPOOL_API_RPM": "0"}, "GENPOOL_API_RPM='0': Input should be greater than or equal to 1"),
    ({"GENPOOL_API_MAX_BODY_BYTES": "big"}, "GENPOOL_API_MAX_BODY_BYTES='big': Input should be a valid integer"),
])
def test_a_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ApiSettings.from_env(env, dotenv_path=None)
    assert str(raised.value).startswith(line)


UNION = "tagged-union[TextRequest,ChatRequest,JsonRequest,ImageRequest]"


def test_validation_errors_name_the_field_of_the_branch_that_was_sent() -> None:
    errors = [{"loc": ("body", UNION, "text", "prompt"), "msg": "Field required"},
              {"loc": ("body", f"list[{UNION}]"), "msg": "Input should be a valid list"}]
    assert describe(errors, {"kind": "text"}) == "prompt: Field required"
    in_list = [{"loc": ("body", UNION), "msg": "Input should be a valid dictionary"},
               {"loc": ("body", f"list[{UNION}]", 2, "json", "json_schema"), "msg": "Value error, bad schema"}]
    assert describe(in_list, [{}, {}, {}]) == "2.json_schema: bad schema"
    assert describe([{"loc": ("query", "priority"), "msg": "Input should be 'high'"}], None) == \
        "query.priority: Input should be 'high'"
    assert describe([{"loc": ("body", 1), "msg": "JSON decode error", "type": "json_invalid"}], None) == \
        "the body is not valid JSON"


def test_tokens_have_one_shape_and_only_their_digest_is_stored(fake_redis: Any) -> None:
    store = TokenStore(fake_redis)
    token = store.create("acme", 60, 1.5)
    assert well_formed(token) and not well_formed(token[:-1]) and not well_formed("Bearer " + token)
    assert fake_redis.hkeys(keys.api_tokens()) == [digest(token).encode()]
    assert [t.name for t in store.list()] == ["acme"]
    with pytest.raises(ValidationError, match="exists"):
        store.create("acme", 60, 1.5)
    with pytest.raises(ValidationError, match="name:"):
        store.create("ACME corp", 60, 1.5)
    assert store.revoke("acme") and not store.revoke("acme") and store.list() == []


@pytest.fixture
def aredis() -> Iterator[Any]:
    client = fakeredis.FakeAsyncRedis()
    yield client
    asyncio.run(client.aclose())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def token(rpm: int = 3, usd: float = 1.0) -> TokenInfo:
    return TokenInfo(name="acme", rpm=rpm, usd_per_day=usd, created_at=0)


def test_a_minute_of_requests_at_once_then_one_per_interval(aredis: Any) -> None:
    async def scenario() -> list[Any]:
        limits = Limits(aredis)
        outcomes: list[Any] = []
        for _ in range(4):
            try:
                await limits.admit(token(rpm=3))
                outcomes.append("ok")
            except RateLimited as exc:
                outcomes.append(exc.retry_after_s)
        return outcomes

    outcomes = run(scenario())
    assert outcomes[:3] == ["ok"] * 3 and 19 < outcomes[3] <= 20  # the next slot: 60 s / 3


def test_a_batch_above_a_minutes_rate_is_refused_outright(aredis: Any) -> None:
    with pytest.raises(InvalidRequest, match="4 requests at once"):
        run(Limits(aredis).admit(token(rpm=3), cost=4))


def test_the_budget_applies_to_spending_requests_only(aredis: Any) -> None:
    import time

    run(aredis.set(keys.account_spend("acme", utc_day(time.time())), 1.0))
    limits = Limits(aredis)
    run(limits.admit(token(rpm=100)))  # a read
    with pytest.raises(BudgetExhausted) as raised:
        run(limits.admit(token(rpm=100), spends=True))
    assert raised.value.retry_after_s == pytest.approx(seconds_to_utc_midnight(time.time()), abs=5)


def test_a_turn_is_held_until_its_jobs_record_exists(aredis: Any) -> None:
    async def scenario() -> None:
        turns = Turns(aredis, ttl_s=60)
        mine = await turns.acquire("c1", wait_s=0)
        with pytest.raises(Conflict):
            await turns.acquire("c1", wait_s=0)  # pending: another sender waits
        await turns.attach("c1", mine, "job1")
        assert await turns.current_job("c1") == "job1"
        await turns.acquire("c1", wait_s=0)  # no RQ job hash: job1 was lost, the turn is free
        await aredis.delete(keys.conversation_turn("c1"))
        mine = await turns.acquire("c1", wait_s=0)
        await turns.attach("c1", mine, "job1")
        await aredis.hset(Job.key_for("job1"), "status", "started")  # job1 exists now: it holds the turn
        with pytest.raises(Conflict):
            await turns.acquire("c1", wait_s=0.1)
        await aredis.set(keys.result("job1"), "{}")  # the job ended
        assert await turns.current_job("c1") is None
        other = await turns.acquire("c1", wait_s=0)
        await turns.release("c1", mine)  # a stale holder cannot release someone else's turn
        with pytest.raises(Conflict):
            await turns.acquire("c1", wait_s=0)
        await turns.release("c1", other)
        await turns.acquire("c1", wait_s=0)

    run(scenario())


def test_stream_ids_order_by_time_then_sequence() -> None:
    assert stream_id("1700000000000-2") > stream_id("1700000000000-1") > stream_id("999-9")
    assert format_id(stream_id("5-3")) == "5-3" and stream_id("0-0") == (0, 0)
