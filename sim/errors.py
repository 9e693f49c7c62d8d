"""Google-shaped API errors: one exception type and the builders for every error the simulator returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_SERVICE = "generativelanguage.googleapis.com"


@dataclass
class ApiError(Exception):
    """An error answered as `{"error": {code, message, status, details}}`; `reason` goes to the request log."""

    code: int
    message: str
    reason: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code} {self.message}")

    @property
    def status(self) -> str:
        return _STATUS_BY_CODE.get(self.code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str, reason: str = "bad_request") -> ApiError:
    return ApiError(400, message, reason)


def route_not_found(path: str) -> ApiError:
    return ApiError(404, f"Requested entity was not found: {path[:200]}", "bad_route")


def model_not_found(model: str, version: str, method: str, reason: str = "unknown_model") -> ApiError:
    message = (f"models/{model} is not found for API version {version}, or is not supported for {method}. "
               "Call ListModels to see the list of available models and their supported methods.")
    return ApiError(404, message, reason)


def bad_api_key() -> ApiError:
    info = {"@type": _ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com",
            "metadata": {"service": _SERVICE}}
    help_ = {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."}
    return ApiError(400, "API key not valid. Please pass a valid API key.", "bad_key", [info, help_])


def missing_api_key() -> ApiError:
    message = ("Method doesn't allow unregistered callers (callers without established identity). "
               "Please use API Key or other form of API consumer identity to call this API.")
    info = {"@type": _ERROR_INFO, "reason": "CONSUMER_INVALID", "domain": "googleapis.com",
            "metadata": {"service": _SERVICE}}
    return ApiError(403, message, "no_key", [info])


def fault_error(code: int, model: str, version: str) -> ApiError:
    """The error an injected fault of kind "503", "500", "404" or "400" answers with."""
    reason = f"fault:{code}"
    if code == 404:
        return model_not_found(model, version, "generateContent", reason)
    messages = {
        503: "The model is overloaded. Please try again later.",
        500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        400: "Request contains an invalid argument.",
    }
    return ApiError(code, messages.get(code, "Injected fault."), reason)


class ConfigError(ValueError):
    """A config file, a fault list or a runtime model override is invalid."""
