"""The 429 RESOURCE_EXHAUSTED body Gemini answers when a per-model quota is exceeded."""

from __future__ import annotations

import math
from typing import Any

from genpool.sim.errors import ApiError
from genpool.sim.quota import Violation

# dimension -> (metric name part, quotaId) as the real API reports them.
_QUOTAS = {
    "rpm": ("requests", "GenerateRequestsPerMinutePerProjectPerModel"),
    "tpm": ("input_token_count", "GenerateContentInputTokensPerModelPerMinute"),
    "ipm": ("images", "ImagesPerMinutePerProjectPerModel"),
    "rpd": ("requests", "GenerateRequestsPerDayPerProjectPerModel"),
}

_MESSAGE = ("You exceeded your current quota, please check your plan and billing details. For more information "
            "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current "
            "usage, head to: https://ai.dev/rate-limit. ")
_RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"


def quota_names(dimension: str, free_tier: bool) -> tuple[str, str]:
    """(quotaMetric, quotaId) of a dimension; the free tier adds "free_tier_" / "-FreeTier" like Gemini."""
    metric, quota_id = _QUOTAS[dimension]
    if free_tier:
        return f"generativelanguage.googleapis.com/generate_content_free_tier_{metric}", f"{quota_id}-FreeTier"
    return f"generativelanguage.googleapis.com/generate_content_{metric}", quota_id


def _violation(found: Violation, model: str, free_tier: bool) -> dict[str, Any]:
    metric, quota_id = quota_names(found.dimension, free_tier)
    return {"quotaMetric": metric, "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": model}, "quotaValue": str(found.limit)}


def quota_exhausted(violations: list[Violation], model: str, free_tier: bool = False) -> ApiError:
    """A 429 naming every exceeded quota; RetryInfo is the longest wait, rounded up to whole seconds."""
    wait_s = max(v.wait_s for v in violations)
    lines = "".join(f"\n* Quota exceeded for metric: {quota_names(v.dimension, free_tier)[0]}, "
                    f"limit: {v.limit}, model: {model}" for v in violations)
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [_violation(v, model, free_tier) for v in violations]},
        {"@type": "type.googleapis.com/google.rpc.Help",
         "links": [{"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS_URL}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{math.ceil(wait_s)}s"},
    ]
    message = f"{_MESSAGE}{lines}\nPlease retry in {wait_s:.6f}s."
    return ApiError(429, message, f"quota:{violations[0].dimension}", details)
