"""One error root for genpool. Vendor exceptions are translated once, where they enter.

``Retryable`` errors may succeed on the same model later; ``Permanent`` ones never will for this
request. ``ModelUnavailable`` is about the model, not the request: fall back to the next one.
"""

from __future__ import annotations


class GenpoolError(Exception):
    """Root of every error genpool raises on purpose."""

    #: A short machine-readable type recorded in results and metrics.
    kind: str = "error"


class ConfigError(GenpoolError):
    """Settings, catalog or environment are wrong; the message says what to set."""

    kind = "config"


class ValidationError(GenpoolError):
    """A request is invalid; nothing was enqueued."""

    kind = "invalid_request"


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
