"""Translate google-genai / httpx2 failures into genpool's errors, once, at the boundary.

Pure functions over the HTTP code and Google's error body, so the table is unit-tested without HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from genpool.shared import errors as e

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_CONTEXT_HINTS = ("input token count", "exceeds the maximum number of tokens", "context length", "too long")
TRANSIENT_CODES = {408, 500, 502, 503, 504}


def parse_duration_s(text: Any) -> float | None:
    """Google's protobuf Duration JSON ("12s", "0.5s") in seconds, or None."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    return float(match.group(1)) if match else None


def error_details(body: Any) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        return []
    details = body.get("error", body).get("details", []) if isinstance(body.get("error", body), Mapping) else []
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _detail(body: Any, type_suffix: str) -> Mapping[str, Any] | None:
    for detail in error_details(body):
        if str(detail.get("@type", "")).endswith(type_suffix):
            return detail
    return None


def retry_delay_s(body: Any) -> float | None:
    info = _detail(body, "google.rpc.RetryInfo")
    return parse_duration_s(info.get("retryDelay")) if info else None


def quota_ids(body: Any) -> list[str]:
    failure = _detail(body, "google.rpc.QuotaFailure")
    violations = failure.get("violations", []) if failure else []
    return [str(v.get("quotaId", "")) for v in violations if isinstance(v, Mapping)]


def quota_scope(ids: list[str]) -> e.QuotaScope:
    """"day" when any violated quota is per day (its reset is the next Pacific midnight), else "minute"."""
    return "day" if any("PerDay" in q or "per_day" in q.lower() for q in ids) else "minute"


def _reasons(body: Any) -> set[str]:
    return {str(d.get("reason", "")) for d in error_details(body) if "reason" in d}


def from_http(code: int, status: str | None, message: str | None, body: Any) -> e.GenpoolError:
    """Map one HTTP error answer to a genpool error."""
    text = f"{code} {status or ''}: {message or ''}".strip()
    if code == 429:
        ids = quota_ids(body)
        return e.RateLimited(text, retry_after_s=retry_delay_s(body), scope=quota_scope(ids),
                             quota_id=",".join(ids))
    if code in (401, 403) or "API_KEY_INVALID" in _reasons(body):
        return e.AuthError(text)
    if code == 404:
        return e.ModelNotFound(text)
    if code == 400 and any(h in (message or "").lower() for h in _CONTEXT_HINTS):
        return e.ContextTooLong(text)
    if code in TRANSIENT_CODES or code >= 500:
        return e.ServerError(text, retry_after_s=retry_delay_s(body))
    return e.InvalidRequest(text)


def from_exception(exc: BaseException) -> e.GenpoolError:
    """Map an exception raised by the SDK call (API error or transport error)."""
    from google.genai import errors as genai_errors

    if isinstance(exc, e.GenpoolError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return from_http(int(exc.code or 0), exc.status, exc.message, exc.details)
    return _from_transport(exc)


def _from_transport(exc: BaseException) -> e.GenpoolError:
    import httpx2

    name = type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return e.CallTimeout(f"timed out ({name})")
    if isinstance(exc, httpx2.TransportError | ConnectionError | OSError):
        return e.ConnectionFailed(f"connection failed ({name}: {exc})")
    return e.TransientError(f"unexpected {name}: {exc}")
