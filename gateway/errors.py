"""What a gateway client is told when something is wrong: ``{"code", "message"}``, one line, no internals.

Every error here descends from genpool's one root (genpool.shared.errors.GenpoolError). genpool errors
raised by the producer are mapped once, in ``from_genpool``; anything else is a 500 whose detail goes to
the log only.
"""

from __future__ import annotations

import logging
import math

from genpool.shared import errors as e

log = logging.getLogger("genpool.gateway")


class ApiError(e.GenpoolError):
    """An answer the client gets as ``{"code", "message"}`` with ``status``."""

    kind = "api_error"
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after_s is not None:
            out["retry_after_s"] = self.retry_after_header()
        return out

    def retry_after_header(self) -> int:
        return max(1, math.ceil(self.retry_after_s or 0))


class InvalidRequest(ApiError):
    code = "invalid_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conversation_busy"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class BudgetExhausted(ApiError):
    status = 429
    code = "budget_exhausted"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


class Internal(ApiError):
    status = 500
    code = "internal"


def from_genpool(exc: e.GenpoolError) -> ApiError:
    """A producer error as the client sees it: a bad request says what is wrong; an outage does not say
    which host or port (the log does)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, e.ValidationError):
        return InvalidRequest(str(exc))
    if isinstance(exc, e.ServiceUnavailable):
        log.warning("service unavailable: %s", exc)
        return Unavailable("the job queue cannot be reached right now; try again shortly", retry_after_s=2)
    log.error("unexpected genpool error: %s: %s", exc.kind, exc)
    return Internal("internal error")
