"""Per-model quotas through the SDK: RPM, TPM, IPM and RPD 429s with Gemini's body and a correct RetryInfo."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import SIM_TEST_KEY
from tests.conftest import sim_admin as admin

pytestmark = pytest.mark.integration

TEXT_MODEL = "gemini-2.5-flash"
IMAGE_MODEL = "gemini-2.5-flash-image"


@pytest.fixture
def client(sim_url: str) -> genai.Client:
    return genai.Client(api_key=SIM_TEST_KEY, http_options=types.HttpOptions(base_url=sim_url, timeout=10_000))


def quota_details(err: errors.APIError) -> tuple[dict[str, Any], float]:
    """(the first QuotaFailure violation, RetryInfo delay in seconds)."""
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in err.details["error"]["details"]}
    return details["QuotaFailure"]["violations"][0], float(details["RetryInfo"]["retryDelay"].rstrip("s"))


def exhaust(client: genai.Client, model: str, prompt: str = "hi") -> errors.ClientError:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=model, contents=prompt)
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    return caught.value


def test_rpm_429_retry_delay_matches_window(sim_url: str, client: genai.Client) -> None:
    window_s = 3
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpm": 3, "window_s": window_s}}})
    started = time.time()
    for i in range(3):
        client.models.generate_content(model=TEXT_MODEL, contents=f"q{i}")
    err = exhaust(client, TEXT_MODEL)
    elapsed_s = time.time() - started
    violation, delay_s = quota_details(err)
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel"
    assert violation["quotaMetric"] == "generativelanguage.googleapis.com/generate_content_requests"
    assert violation["quotaDimensions"] == {"location": "global", "model": TEXT_MODEL}
    assert violation["quotaValue"] == "3"
    assert abs(delay_s - math.ceil(window_s - elapsed_s)) <= 1
    time.sleep(delay_s)
    client.models.generate_content(model=TEXT_MODEL, contents="after the wait")
    stats = admin(sim_url, "stats")["models"][TEXT_MODEL]
    assert stats["quota_429"]["rpm"] == 1 and stats["by_status"] == {"200": 4, "429": 1}
    assert stats["peak_window"]["requests"] == 3  # rejected requests consumed nothing


def test_quota_is_shared_across_keys_and_per_model(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpm": 1, "window_s": 30}}})
    client.models.generate_content(model=TEXT_MODEL, contents="one")
    exhaust(client, TEXT_MODEL)
    client.models.generate_content(model="gemini-2.5-flash-lite", contents="other model is fine")


def test_tpm_counts_prompt_tokens(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"tpm": 100, "window_s": 30}}})
    prompt = "x" * 300  # 75 tokens
    client.models.generate_content(model=TEXT_MODEL, contents=prompt)
    violation, delay_s = quota_details(exhaust(client, TEXT_MODEL, prompt))
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute"
    assert violation["quotaMetric"] == "generativelanguage.googleapis.com/generate_content_input_token_count"
    assert 28 <= delay_s <= 30
    client.models.generate_content(model=TEXT_MODEL, contents="x" * 100)  # 25 tokens still fit
    assert admin(sim_url, "stats")["models"][TEXT_MODEL]["window"]["tokens"] == 100


def test_ipm_counts_images(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {IMAGE_MODEL: {"ipm": 2, "window_s": 30}}})
    for i in range(2):
        client.models.generate_content(model=IMAGE_MODEL, contents=f"picture {i}")
    violation, _ = quota_details(exhaust(client, IMAGE_MODEL, "picture 3"))
    assert violation["quotaId"] == "ImagesPerMinutePerProjectPerModel"
    client.models.generate_content(model=IMAGE_MODEL, contents="words only [[noimage]]")  # no image, no IPM
    stats = admin(sim_url, "stats")["models"][IMAGE_MODEL]
    assert stats["images"] == 2 and stats["quota_429"]["ipm"] == 1


def test_rpd_resets_at_pacific_midnight(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpd": 2}}})
    for i in range(2):
        client.models.generate_content(model=TEXT_MODEL, contents=f"day {i}")
    err = exhaust(client, TEXT_MODEL)
    now = dt.datetime.now(ZoneInfo("America/Los_Angeles"))
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), now.tzinfo)
    violation, delay_s = quota_details(err)
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel"
    assert abs(delay_s - math.ceil((midnight - now).total_seconds())) <= 1


def test_429_is_not_retried_by_default_and_streaming_gets_it_too(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpm": 1, "window_s": 30}}})
    client.models.generate_content(model=TEXT_MODEL, contents="one")
    with pytest.raises(errors.ClientError) as caught:
        list(client.models.generate_content_stream(model=TEXT_MODEL, contents="two"))
    assert caught.value.code == 429


def test_reset_clears_quota_windows(sim_url: str, client: genai.Client) -> None:
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpm": 1, "window_s": 30}}})
    client.models.generate_content(model=TEXT_MODEL, contents="one")
    exhaust(client, TEXT_MODEL)
    admin(sim_url, "reset", {})
    admin(sim_url, "models", {"models": {TEXT_MODEL: {"rpm": 1, "window_s": 30}}})
    client.models.generate_content(model=TEXT_MODEL, contents="fresh window")
