"""Meaningless input is refused, settings come from one path, and what genpool prints is exact (#14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from genpool.producer.client import GenPool
from genpool.shared.errors import ConfigError, GenpoolError, ValidationError
from genpool.shared.settings import Settings

TEXT = {"kind": "text", "prompt": "hello"}


@pytest.fixture
def pool(fake_redis: redis.Redis) -> GenPool:
    return GenPool(fake_redis, Settings.from_env({}, dotenv_path=None))


@pytest.mark.parametrize("request_", [
    {"kind": "text", "prompt": "   \n\t"},
    {"kind": "json", "prompt": " ", "json_schema": {"type": "object", "properties": {}}},
    {"kind": "image", "prompt": "\n"},
    {"kind": "chat", "messages": [{"role": "user", "text": "  "}]},
    {"kind": "chat", "conversation_id": "c1", "message": " "},
    {"kind": "text", "prompt": "fine", "system_instruction": "   "},
])
def test_whitespace_only_text_is_refused(pool: GenPool, request_: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="only whitespace"):
        pool.validate(request_)


def test_a_chat_with_both_messages_and_conversation_id_is_refused(pool: GenPool) -> None:
    with pytest.raises(ValidationError, match="not both"):
        pool.validate({"kind": "chat", "conversation_id": "c1", "message": "next",
                       "messages": [{"role": "user", "text": "hi"}]})


def test_an_idempotency_key_reused_with_another_request_names_the_first_job(pool: GenPool) -> None:
    first = pool.submit(TEXT, idempotency_key="order-42")
    again = pool.submit(dict(TEXT), idempotency_key="order-42")
    assert again.id == first.id and again.existing
    with pytest.raises(ValidationError, match=f"first used for job {first.id}") as info:
        pool.submit({"kind": "text", "prompt": "something else"}, idempotency_key="order-42")
    assert getattr(info.value, "job_id", None) == first.id


def test_a_conflicting_key_in_a_batch_enqueues_nothing_and_frees_the_batchs_own_claims(
        pool: GenPool, fake_redis: redis.Redis) -> None:
    pool.submit(TEXT, idempotency_key="k1")
    jobs_before = fake_redis.llen("rq:queue:genpool-default")
    with pytest.raises(ValidationError):
        pool.submit_many([{"kind": "text", "prompt": "new"}, {"kind": "text", "prompt": "other"}],
                         idempotency_keys=["k2", "k1"])
    assert fake_redis.llen("rq:queue:genpool-default") == jobs_before
    assert not pool.submit({"kind": "text", "prompt": "third"}, idempotency_key="k2").existing  # k2 was freed


def test_submit_many_names_the_bad_item(pool: GenPool) -> None:
    with pytest.raises(ValidationError, match=r"^request 2 \(0-based\): text.prompt"):
        pool.submit_many([TEXT, TEXT, {"kind": "text", "prompt": ""}, TEXT])


def test_two_messages_for_one_conversation_in_one_submit_are_refused(pool: GenPool) -> None:
    message = {"kind": "chat", "conversation_id": "c1", "message": "hi"}
    with pytest.raises(ValidationError, match="requests 0 and 2: two messages for conversation 'c1'"):
        pool.submit_many([message, TEXT, {**message, "message": "again"}])


def test_a_second_message_waits_for_the_first_answer_then_says_busy(pool: GenPool) -> None:
    from genpool.shared.errors import ConversationBusy

    pool.submit({"kind": "chat", "conversation_id": "c1", "message": "first"})
    with pytest.raises(ConversationBusy, match="still being answered"):
        pool.submit({"kind": "chat", "conversation_id": "c1", "message": "second"}, turn_wait_s=0.3)
    pool.submit({"kind": "chat", "conversation_id": "c2", "message": "another conversation"}, turn_wait_s=0.3)


def test_wait_on_an_id_that_never_existed_says_no_such_job(pool: GenPool) -> None:
    with pytest.raises(GenpoolError, match="no such job"):
        pool.handle("0" * 32).wait(timeout_s=5)


# --- settings: one path ----------------------------------------------------------------------------------

def test_the_nearest_env_file_up_from_the_working_directory_is_read(tmp_path: Path, clean_env: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("S3_BUCKET=from-parent\nAWS_ACCESS_KEY_ID=AKIDENV\nAWS_SECRET_ACCESS_KEY=s3cr3t\n")
    deeper = tmp_path / "a" / "b"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    settings = Settings.from_env()
    assert settings.s3_bucket == "from-parent"
    assert settings.env_file == tmp_path / ".env"
    from genpool.shared.storage import session

    credentials = session(settings).get_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKIDENV", "s3cr3t")


def test_genpool_env_file_is_explicit_and_must_exist(tmp_path: Path, clean_env: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("S3_BUCKET=cwd\n")
    other = tmp_path / "prod.env"
    other.write_text("S3_BUCKET=explicit\n")
    monkeypatch.setenv("GENPOOL_ENV_FILE", str(other))
    assert Settings.from_env().s3_bucket == "explicit"
    monkeypatch.setenv("GENPOOL_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(ConfigError, match="GENPOOL_ENV_FILE=.*no such file"):
        Settings.from_env()


@pytest.mark.parametrize("url", ["notaurl", "http://localhost:6379", "redis://:hunter2@host:notaport/0"])
def test_a_malformed_redis_url_is_one_line_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"REDIS_URL": url}, dotenv_path=None)
    message = str(info.value)
    assert message.startswith("REDIS_URL=") and "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize("name", ["S3_ENDPOINT_URL", "GEMINI_BASE_URL"])
def test_a_malformed_endpoint_is_one_line(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}='localhost:9000' is not a URL"):
        Settings.from_env({name: "localhost:9000"}, dotenv_path=None)


def test_secrets_never_print(clean_env: None) -> None:
    settings = Settings.from_env({"GEMINI_API_KEY": "AIzaSECRET", "AWS_ACCESS_KEY_ID": "AKID",
                                  "AWS_SECRET_ACCESS_KEY": "awsSECRET", "AWS_SESSION_TOKEN": "tokSECRET",
                                  "REDIS_URL": "redis://user:redisSECRET@host:6379/0"}, dotenv_path=None)
    shown = repr(settings) + str(settings)
    for secret in ("AIzaSECRET", "awsSECRET", "tokSECRET", "redisSECRET"):
        assert secret not in shown


def test_half_given_aws_credentials_are_one_line(clean_env: None) -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"):
        Settings.from_env({"AWS_ACCESS_KEY_ID": "AKID"}, dotenv_path=None)


# --- what genpool prints ---------------------------------------------------------------------------------

def test_stats_json_prints_counts_as_integers_and_costs_without_float_noise() -> None:
    from genpool.ops.stats import tidy

    data = {"models": {"m": {"requests": 55.0, "cost_usd_total": 0.1 + 0.2, "latency": {"p50_le_s": 0.5}}}}
    text = json.dumps(tidy(data))
    assert '"requests": 55,' in text and '"cost_usd_total": 0.3' in text and "0.30000000000000004" not in text


def test_the_malloc_arena_cap_takes_on_glibc() -> None:
    import platform

    from genpool.worker.memory import cap_arenas

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("no glibc")
    assert cap_arenas(2) is True
    assert cap_arenas(0) is False
