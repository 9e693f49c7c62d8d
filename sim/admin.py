"""The loopback admin API under /_sim/: health, stats, reset, runtime faults, model overrides, accepted keys."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from genpool.sim.errors import ApiError, ConfigError, invalid_argument, route_not_found
from genpool.sim.request import parse_json
from genpool.sim.state import Simulator


def _settings_view(sim: Simulator) -> dict[str, Any]:
    return {"models": {s.model_id: asdict(s) for s in sim.served_models()}}


def _post_faults(sim: Simulator, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or "faults" not in body:
        raise ConfigError('expected {"faults": [...]}')
    sim.replace_faults(body["faults"])
    return {"faults": sim.faults.describe()}


def _post_models(sim: Simulator, body: Any) -> dict[str, Any]:
    sim.override_models(body)
    return _settings_view(sim)


def _post_keys(sim: Simulator, body: Any) -> dict[str, Any]:
    keys = body.get("api_keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError('expected {"api_keys": ["key", ...]} (an empty list accepts any key)')
    sim.set_api_keys(frozenset(keys))
    return {"api_keys": len(keys)}  # how many, never the keys


def _post_reset(sim: Simulator, body: Any) -> dict[str, Any]:
    sim.reset()
    return {"status": "reset"}


_GET = {
    "health": lambda sim: {"status": "ok", **sim.gauges.snapshot()},
    "stats": lambda sim: sim.snapshot(),
    "faults": lambda sim: {"faults": sim.faults.describe()},
    "models": _settings_view,
}
_POST = {"faults": _post_faults, "models": _post_models, "keys": _post_keys, "reset": _post_reset}


def handle_admin(sim: Simulator, method: str, name: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for /_sim/<name>; errors are Google-shaped like the rest of the API."""
    try:
        if method == "GET" and name in _GET:
            return 200, _GET[name](sim)
        if method == "POST" and name in _POST:
            return 200, _POST[name](sim, parse_json(raw_body) if raw_body.strip() else {})
        raise route_not_found(f"/_sim/{name}")
    except ConfigError as exc:
        return 400, invalid_argument(str(exc)).body()
    except ApiError as err:
        return err.code, err.body()
