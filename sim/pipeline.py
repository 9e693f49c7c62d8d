"""One API call from parsed HTTP facts to an Outcome: auth -> model -> body -> faults -> quota -> answer.

No sockets here: the HTTP handler sleeps `delay_s`, then writes, hangs or resets as the Outcome says.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Any

from genpool.sim.answer import count_tokens_body, make_plan, render, response_body, stream_bodies
from genpool.sim.catalog import ModelSettings
from genpool.sim.config import SimConfig
from genpool.sim.errors import ApiError, bad_api_key, fault_error, missing_api_key, model_not_found
from genpool.sim.faults import FaultSpec
from genpool.sim.quota import Cost
from genpool.sim.quota_errors import quota_exhausted
from genpool.sim.request import field_of, parse_generate, parse_json
from genpool.sim.state import Simulator
from genpool.sim.stats import Record
from genpool.sim.textgen import prompt_tokens

_ERROR_FAULTS = {"503": 503, "500": 500, "404": 404, "400": 400}
_RESPONSE_IDS = itertools.count(1)
_ID_PREFIX = os.urandom(4).hex()


@dataclass(frozen=True)
class Call:
    method: str  # generateContent | streamGenerateContent | countTokens | get
    version: str
    model: str
    api_key: str | None
    body: bytes
    arrived_s: float


@dataclass(frozen=True)
class Outcome:
    status: int
    action: str = "json"  # json | sse | hang | reset
    delay_s: float = 0.0
    body: dict[str, Any] | None = None
    chunks: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    record: Record | None = None  # logged once answered; the handler fills in the measured latency
    cut: bool = False  # sse: reset the connection after the first chunk (a stream broken mid-answer)


def authenticate(config: SimConfig, api_key: str | None) -> None:
    if not api_key:
        raise missing_api_key()
    if config.api_keys and api_key not in config.api_keys:
        raise bad_api_key()


def require_model(sim: Simulator, call: Call) -> ModelSettings:
    settings, reason = sim.model(call.model)
    if settings is None:
        raise model_not_found(call.model, call.version, call.method, reason)
    return settings


def error_outcome(err: ApiError, call: Call, prompt_tokens_: int = 0, delay_s: float = 0.0) -> Outcome:
    record = Record(call.arrived_s, call.model, err.code, err.reason, prompt_tokens=prompt_tokens_)
    return Outcome(err.code, "json", delay_s, err.body(), record=record)


def _response_id() -> str:
    return f"sim-{_ID_PREFIX}-{next(_RESPONSE_IDS)}"


def _fault_outcome(fault: FaultSpec, call: Call, delay_s: float) -> Outcome | None:
    """The outcome of an error / hang / reset fault, or None when the call goes on (a slow fault)."""
    if fault.kind in _ERROR_FAULTS:
        return error_outcome(fault_error(_ERROR_FAULTS[fault.kind], call.model, call.version), call, 0, delay_s)
    record = Record(call.arrived_s, call.model, 0, f"fault:{fault.kind}")
    if fault.kind == "hang":
        return Outcome(0, "hang", fault.delay_s, record=replace(record, latency_ms=fault.delay_s * 1000))
    if fault.kind == "reset" or (fault.kind == "cut" and call.method != "streamGenerateContent"):
        return Outcome(0, "reset", record=record)
    return None


def _generate(sim: Simulator, call: Call) -> Outcome:
    authenticate(sim.config, call.api_key)
    settings = require_model(sim, call)
    plan = make_plan(settings, parse_generate(parse_json(call.body)), sim.config.triggers)
    delay_s = sim.latency_s(settings)
    reason = f"trigger:{plan.trigger}" if plan.trigger else "ok"
    fault = sim.faults.pick(call.model, call.arrived_s)
    if fault is not None:
        stopped = _fault_outcome(fault, call, delay_s)
        if stopped is not None:
            return stopped
        delay_s, reason = delay_s + fault.delay_s, f"fault:{fault.kind}"
    violations = sim.admit(settings, call.arrived_s, Cost(1, plan.prompt_tokens, plan.images))
    if violations:
        return error_outcome(quota_exhausted(violations, call.model, sim.config.free_tier), call, plan.prompt_tokens)
    answer = render(plan)
    record = Record(call.arrived_s, call.model, 200, reason, plan.prompt_tokens, answer.output_tokens,
                    answer.images)
    if call.method == "streamGenerateContent":
        return Outcome(200, "sse", delay_s, chunks=tuple(stream_bodies(plan, answer, _response_id())),
                       record=record, cut=fault is not None and fault.kind == "cut")
    return Outcome(200, "json", delay_s, response_body(plan, answer, _response_id()), record=record)


def generate(sim: Simulator, call: Call) -> Outcome:
    """generateContent and streamGenerateContent."""
    try:
        return _generate(sim, call)
    except ApiError as err:
        return error_outcome(err, call)


def count_tokens(sim: Simulator, call: Call) -> Outcome:
    """countTokens: same estimate as usageMetadata.promptTokenCount; no quota, faults or request log."""
    try:
        authenticate(sim.config, call.api_key)
        require_model(sim, call)
        body = parse_json(call.body)
        inner = field_of(body, "generateContentRequest") if isinstance(body, dict) else None
        request = parse_generate(inner if isinstance(inner, dict) else body)
    except ApiError as err:
        return Outcome(err.code, body=err.body())
    return Outcome(200, body=count_tokens_body(prompt_tokens(request)))
