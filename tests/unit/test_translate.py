"""The classification table of worker/translate: HTTP answers and SDK / transport exceptions → genpool errors."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from google.genai import errors as genai_errors

from genpool.shared import errors as e
from genpool.worker.translate import from_exception, from_http, parse_duration_s, quota_scope, retry_delay_s

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def body(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message, "details": list(details)}}


def rate_limit_body(delay: str, quota_id: str) -> dict[str, Any]:
    return body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted",
                {"@type": QUOTA_FAILURE, "violations": [{"quotaMetric": "m", "quotaId": quota_id}]},
                {"@type": RETRY_INFO, "retryDelay": delay})


def classify(code: int, status: str, message: str, b: Any) -> e.GenpoolError:
    return from_http(code, status, message, b)


def test_429_with_retry_info_is_rate_limited_per_minute() -> None:
    err = classify(429, "RESOURCE_EXHAUSTED", "quota",
                   rate_limit_body("12s", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))
    assert isinstance(err, e.RateLimited)
    assert err.retry_after_s == 12
    assert err.scope == "minute"
    assert err.quota_id == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    assert isinstance(err, e.Retryable)


def test_429_per_day_quota_is_scope_day() -> None:
    err = classify(429, "RESOURCE_EXHAUSTED", "quota",
                   rate_limit_body("30s", "GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
    assert isinstance(err, e.RateLimited)
    assert err.scope == "day"
    assert err.retry_after_s == 30


def test_429_without_details() -> None:
    err = classify(429, "RESOURCE_EXHAUSTED", "quota", None)
    assert isinstance(err, e.RateLimited)
    assert err.retry_after_s is None
    assert err.scope == "minute"


def test_400_api_key_invalid_is_auth() -> None:
    b = body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
             {"@type": ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com"})
    err = classify(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", b)
    assert isinstance(err, e.AuthError)
    assert isinstance(err, e.Permanent)


@pytest.mark.parametrize(("code", "status"), [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED")])
def test_401_403_are_auth(code: int, status: str) -> None:
    assert isinstance(classify(code, status, "no", body(code, status, "no")), e.AuthError)


def test_404_is_model_not_found() -> None:
    err = classify(404, "NOT_FOUND", "models/gemini-1.5-pro is not found", None)
    assert isinstance(err, e.ModelNotFound)
    assert isinstance(err, e.ModelUnavailable)
    assert "404" in str(err) and "gemini-1.5-pro" in str(err)


@pytest.mark.parametrize("message", [
    "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
    "Request payload: context length too large",
])
def test_400_too_many_tokens_is_context_too_long(message: str) -> None:
    assert isinstance(classify(400, "INVALID_ARGUMENT", message, None), e.ContextTooLong)


def test_plain_400_is_invalid_request() -> None:
    err = classify(400, "INVALID_ARGUMENT", "Invalid value at 'generation_config.temperature'", None)
    assert type(err) is e.InvalidRequest
    assert "400 INVALID_ARGUMENT" in str(err)


@pytest.mark.parametrize("code", [408, 500, 502, 503, 504, 599])
def test_server_side_codes_are_retryable_server_errors(code: int) -> None:
    err = classify(code, "UNAVAILABLE", "overloaded", None)
    assert isinstance(err, e.ServerError)
    assert isinstance(err, e.TransientError | e.Retryable)


def test_503_with_retry_info_keeps_the_delay() -> None:
    b = body(503, "UNAVAILABLE", "overloaded", {"@type": RETRY_INFO, "retryDelay": "2s"})
    assert classify(503, "UNAVAILABLE", "overloaded", b).retry_after_s == 2


@pytest.mark.parametrize(("text", "seconds"), [("0.5s", 0.5), ("12s", 12.0), (" 3s ", 3.0), ("0s", 0.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "12", "s", "-1s", "1m", "1.s", None, 12, {"seconds": 3}])
def test_parse_duration_rejects_bad_values(text: Any) -> None:
    assert parse_duration_s(text) is None


@pytest.mark.parametrize("b", [None, "oops", [], {"error": "text"}, {"error": {"details": "x"}},
                               {"error": {"details": ["x", 3]}}])
def test_malformed_bodies_do_not_crash(b: Any) -> None:
    assert retry_delay_s(b) is None
    assert isinstance(classify(429, None, None, b), e.RateLimited)  # type: ignore[arg-type]


def test_quota_scope() -> None:
    assert quota_scope([]) == "minute"
    assert quota_scope(["A-PerMinute", "B-PerDay"]) == "day"
    assert quota_scope(["generate_requests_per_day"]) == "day"


# --- from_exception -----------------------------------------------------------------------------------

def test_client_error_from_the_sdk() -> None:
    exc = genai_errors.ClientError(429, rate_limit_body("7s", "GenerateRequestsPerMinutePerProjectPerModel"))
    err = from_exception(exc)
    assert isinstance(err, e.RateLimited)
    assert err.retry_after_s == 7
    assert err.scope == "minute"


def test_client_error_404_from_the_sdk() -> None:
    exc = genai_errors.ClientError(404, body(404, "NOT_FOUND", "models/x is not found"))
    err = from_exception(exc)
    assert isinstance(err, e.ModelNotFound)
    assert "models/x is not found" in str(err)


def test_client_error_context_too_long_from_the_sdk() -> None:
    exc = genai_errors.ClientError(400, body(400, "INVALID_ARGUMENT",
                                             "The input token count exceeds the maximum number of tokens"))
    assert isinstance(from_exception(exc), e.ContextTooLong)


def test_client_error_bad_key_from_the_sdk() -> None:
    exc = genai_errors.ClientError(400, body(400, "INVALID_ARGUMENT", "API key not valid",
                                             {"@type": ERROR_INFO, "reason": "API_KEY_INVALID"}))
    assert isinstance(from_exception(exc), e.AuthError)


def test_server_error_from_the_sdk() -> None:
    exc = genai_errors.ServerError(503, body(503, "UNAVAILABLE", "The model is overloaded."))
    err = from_exception(exc)
    assert isinstance(err, e.ServerError)
    assert "overloaded" in str(err)


def test_genpool_errors_pass_through() -> None:
    original = e.UnusableAnswer("no image")
    assert from_exception(original) is original


@pytest.mark.parametrize(("exc", "kind"), [
    (httpx2.ReadTimeout("read timed out"), e.CallTimeout),
    (httpx2.ConnectTimeout("connect timed out"), e.CallTimeout),
    (TimeoutError(), e.CallTimeout),
    (httpx2.ConnectError("refused"), e.ConnectionFailed),
    (httpx2.RemoteProtocolError("peer closed connection"), e.ConnectionFailed),
    (ConnectionResetError("reset"), e.ConnectionFailed),
    (RuntimeError("weird"), e.TransientError),
])
def test_transport_errors(exc: BaseException, kind: type[e.GenpoolError]) -> None:
    err = from_exception(exc)
    assert isinstance(err, kind)
    assert isinstance(err, e.TransientError)
