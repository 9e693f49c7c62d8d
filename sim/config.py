"""The simulator's configuration: loaded once from TOML or JSON over the built-in defaults, then frozen."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from genpool.sim import catalog
from genpool.sim.errors import ConfigError
from genpool.sim.faults import FaultSpec, parse_faults

_TOP_KEYS = {"api_keys", "unknown_models", "seed", "quota_tier", "defaults", "models", "faults", "triggers"}


@dataclass(frozen=True)
class Triggers:
    """Prompt substrings that make the simulator answer a specific way instead of echoing."""

    block: str = "[[block]]"
    safety: str = "[[safety]]"
    recitation: str = "[[recitation]]"
    max_tokens: str = "[[max_tokens]]"
    noimage: str = "[[noimage]]"


@dataclass(frozen=True)
class SimConfig:
    api_keys: frozenset[str] = frozenset()  # empty: any non-empty key is accepted
    unknown_models: str = "404"  # "404" or "serve"
    seed: int = 0
    free_tier: bool = False  # quota_tier = "free" names quotas like Gemini's free tier
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType(dict(catalog.BUILTIN_DEFAULTS)))
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=catalog.builtin_models)
    faults: tuple[FaultSpec, ...] = ()
    triggers: Triggers = Triggers()


def _check_type(where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    numeric = expected in (int, (int, float))
    if (numeric and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(f"{where}.{key} has the wrong type: {value!r}")
    if numeric and value < 0:
        raise ConfigError(f"{where}.{key} must not be negative: {value!r}")


def check_table(where: str, raw: Any, allowed: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """A copy of `raw` after checking it is a table of known keys with values of the right types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table/object")
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {sorted(allowed)})")
        _check_type(where, key, value, allowed[key])
    return dict(raw)


def _defaults(raw: Any) -> dict[str, Any]:
    given = check_table("defaults", raw, catalog.DEFAULT_KEYS)
    # Setting latency_ms for everything should not leave image models at the slow built-in latency.
    for key in ("latency_ms", "jitter_ms"):
        if key in given and f"image_{key}" not in given:
            given[f"image_{key}"] = given[key]
    return {**catalog.BUILTIN_DEFAULTS, **given}


def _models(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError("models must be a table/object of model id -> settings")
    models = catalog.builtin_models()
    for model_id, entry in raw.items():
        checked = check_table(f"models.{model_id}", entry, catalog.MODEL_KEYS)
        # Listing a model in the config serves it (even a retired built-in id) unless it says retired.
        checked.setdefault("retired", False)
        key = model_id.removeprefix("models/")
        models[key] = {**models.get(key, {}), **checked}
    return models


def _api_keys(raw: Any) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(k, str) and k for k in raw):
        raise ConfigError("api_keys must be a list of non-empty strings")
    return frozenset(raw)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value)
    if text not in allowed:
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
    return text


def config_from_dict(raw: Mapping[str, Any]) -> SimConfig:
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown config keys: {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    triggers = check_table("triggers", raw.get("triggers", {}), dict.fromkeys(Triggers.__annotations__, str))
    return SimConfig(
        api_keys=_api_keys(raw.get("api_keys", [])),
        unknown_models=_choice("unknown_models", raw.get("unknown_models", "404"), ("404", "serve")),
        seed=seed,
        free_tier=_choice("quota_tier", raw.get("quota_tier", "paid"), ("paid", "free")) == "free",
        defaults=MappingProxyType(_defaults(raw.get("defaults", {}))),
        models=MappingProxyType(_models(raw.get("models", {}))),
        faults=parse_faults(raw.get("faults", [])),
        triggers=Triggers(**triggers),
    )


def load_config(path: Path | None) -> SimConfig:
    """Built-in defaults, overlaid with `path` (.toml or .json) when given."""
    if path is None:
        return config_from_dict({})
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must hold a table/object")
    return config_from_dict(raw)
