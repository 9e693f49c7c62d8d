"""One error root for genpool. Vendor exceptions are translated once, where they enter.

``Retryable`` errors may succeed on the same model later; ``Permanent`` ones never will for this
request. ``ModelUnavailable`` is about the model, not the request: fall back to the next one.
"""

from __future__ import annotations

from typing import Literal

#: What a 429 exhausted: a per-minute quota, or a per-day one (reset at the next Pacific midnight).
QuotaScope = Literal["minute", "day"]


class GenpoolError(Exception):
    """Root of every error genpool raises on purpose."""

    #: A short machine-readable type recorded in results and metrics.
    kind: str = "error"


class ConfigError(GenpoolError):
    """Settings, catalog or environment are wrong; the message says what to set. A job that meets one fails
    at once with a record of this type (no retry: every try would meet it again)."""

    kind = "configuration"


class StorageConfigError(ConfigError):
    """The bucket is missing, the credentials are missing or refused: S3 answers, but not for genpool."""


class ValidationError(GenpoolError):
    """A request is invalid; nothing was enqueued."""

    kind = "invalid_request"


class IdempotencyConflict(ValidationError):
    """An idempotency key came back with a different request than the job it first made."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class NoSuchJob(GenpoolError):
    """A job id genpool has neither a queued job nor a result record for."""

    kind = "no_such_job"


class ConversationBusy(GenpoolError):
    """Another message of the conversation is still being answered; send again once it is done."""

    kind = "conversation_busy"


class Retryable(GenpoolError):
    """May succeed if tried again later (on the same model)."""

    kind = "retryable"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Permanent(GenpoolError):
    """Will fail again for this request; do not retry it."""

    kind = "permanent"


class ServiceUnavailable(Retryable):
    """A dependency genpool needs (Redis, S3) cannot be reached."""

    kind = "service_unavailable"


class LimiterUnavailable(ServiceUnavailable):
    """The shared rate limiter (Redis) cannot be reached: fail closed, do not call Gemini."""

    kind = "limiter_unavailable"


class StorageUnavailable(ServiceUnavailable):
    """The object store cannot be reached."""

    kind = "storage_unavailable"


# --- Failures of one model call, translated at the Gemini boundary (worker/gemini.py) ---------------


class TransientError(Retryable):
    """5xx, 408, timeouts, connection resets: the same model may answer next time."""

    kind = "transient"


class ServerError(TransientError):
    kind = "server_error"


class CallTimeout(TransientError):
    kind = "timeout"


class ConnectionFailed(TransientError):
    kind = "connection"


class RateLimited(Retryable):
    """429 RESOURCE_EXHAUSTED. ``scope`` is "minute" or "day" (from the QuotaFailure quotaId)."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None, scope: QuotaScope = "minute",
                 quota_id: str = "") -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.scope = scope
        self.quota_id = quota_id


class UnusableAnswer(Retryable):
    """HTTP 200 but not usable (no image, JSON failing its schema, recitation): retry, then fall back."""

    kind = "unusable_answer"


class ModelUnavailable(GenpoolError):
    """This model cannot serve (404 retired / not found, circuit open): fall back to the next one."""

    kind = "model_unavailable"


class ModelNotFound(ModelUnavailable):
    kind = "model_not_found"


class ContextTooLong(GenpoolError):
    """The prompt does not fit this model's window: a model with a larger window may take it."""

    kind = "context_too_long"


class InvalidRequest(Permanent):
    """400 INVALID_ARGUMENT: the request itself is wrong; other models would reject it too."""

    kind = "invalid_argument"


class AuthError(Permanent):
    """Bad, missing or suspended API key (400 API_KEY_INVALID, 401, 403): fail fast on every model."""

    kind = "auth"


class ContentBlocked(Permanent):
    """The prompt or answer was blocked (blockReason, SAFETY, PROHIBITED_CONTENT, ...)."""

    kind = "blocked"


class OutputTruncated(Permanent):
    """MAX_TOKENS cut a structured answer short; raising max_output_tokens is the fix."""

    kind = "max_tokens"


class BudgetExhausted(Permanent):
    """Today's budget (the model's or the pool's, USD per Pacific day) is spent, and the job's policy is to fail."""

    kind = "budget_exhausted"


class AllModelsFailed(Permanent):
    """Every model in the chain failed; the message lists each model's last error."""

    kind = "all_models_failed"


class Deferred(GenpoolError):
    """No model can take the job soon: put it back on the queue to run after ``delay_s``."""

    kind = "deferred"

    def __init__(self, message: str, *, delay_s: float) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class BudgetDeferred(Deferred):
    """Today's budget is spent: the job waits for the budget day to turn or a budget to be raised."""

    kind = "budget_deferred"


#: What a genpool command exits with (README): ok | a job failed, unhealthy, a service unreachable | usage or input.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def exit_code(exc: BaseException) -> int:
    """A failure's exit code: 2 when the caller must fix its input or a setting, 1 otherwise."""
    if isinstance(exc, GenpoolError) and exc.kind in (ConfigError.kind, ValidationError.kind):
        return EXIT_USAGE
    return EXIT_FAILED
