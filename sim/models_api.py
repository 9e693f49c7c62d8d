"""GET /{version}/models and GET /{version}/models/{id}: the Model resources the SDK parses."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from genpool.sim.catalog import ModelSettings
from genpool.sim.errors import ApiError, invalid_argument
from genpool.sim.pipeline import Call, Outcome, authenticate, require_model
from genpool.sim.state import Simulator

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_METHODS = ["generateContent", "countTokens", "streamGenerateContent"]


def model_resource(settings: ModelSettings) -> dict[str, Any]:
    return {
        "name": f"models/{settings.model_id}", "baseModelId": settings.model_id, "version": "001",
        "displayName": settings.display_name,
        "description": f"{settings.display_name} (simulated by genpool sim).",
        "inputTokenLimit": settings.input_token_limit, "outputTokenLimit": settings.output_token_limit,
        "supportedGenerationMethods": _METHODS, "temperature": 1.0, "maxTemperature": 2.0, "topP": 0.95,
        "topK": 64,
    }


def _page_args(query: str) -> tuple[int, int]:
    params = parse_qs(query)
    try:
        size = int(params.get("pageSize", [DEFAULT_PAGE_SIZE])[0]) or DEFAULT_PAGE_SIZE
        start = int(params.get("pageToken", ["0"])[0] or 0)
    except ValueError as exc:
        raise invalid_argument("Invalid pageSize or pageToken.") from exc
    if size < 0 or start < 0:
        raise invalid_argument("Invalid pageSize or pageToken.")
    return min(size, MAX_PAGE_SIZE), start


def list_models(sim: Simulator, api_key: str | None, query: str) -> Outcome:
    try:
        authenticate(sim.config, api_key)
        size, start = _page_args(query)
    except ApiError as err:
        return Outcome(err.code, body=err.body())
    served = sim.served_models()
    body: dict[str, Any] = {"models": [model_resource(s) for s in served[start:start + size]]}
    if start + size < len(served):
        body["nextPageToken"] = str(start + size)
    return Outcome(200, body=body)


def get_model(sim: Simulator, call: Call) -> Outcome:
    try:
        authenticate(sim.config, call.api_key)
        return Outcome(200, body=model_resource(require_model(sim, call)))
    except ApiError as err:
        return Outcome(err.code, body=err.body())
