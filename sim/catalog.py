"""Built-in models and defaults, and resolving one model id into its effective settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genpool.sim.quota import Limits

TEXT_MODELS = ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.1-flash-lite", "gemini-3.1-pro-preview",
               "gemini-2.5-flash", "gemini-2.5-flash-lite")
IMAGE_MODELS = ("gemini-3.1-flash-image", "gemini-3.1-flash-lite-image", "gemini-2.5-flash-image")
# Ids older presets still name; Gemini answers 404 for them, so the simulator does too unless configured.
RETIRED_MODELS = ("gemini-1.5-pro", "gemini-1.5-flash", "gemini-1.5-flash-8b")

BUILTIN_DEFAULTS: dict[str, Any] = {
    "latency_ms": 300.0, "jitter_ms": 100.0, "image_latency_ms": 1500.0, "image_jitter_ms": 300.0,
    "rpm": 0, "tpm": 0, "rpd": 0, "ipm": 0, "window_s": 60.0, "image_max_px": 64,
    "input_token_limit": 1_048_576, "output_token_limit": 65_536,
}

# Keys a `defaults` table may set, and keys a per-model table may set (value types for validation).
DEFAULT_KEYS: dict[str, type | tuple[type, ...]] = {
    key: (int, float) if isinstance(value, float) else int for key, value in BUILTIN_DEFAULTS.items()
}
MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    **{k: v for k, v in DEFAULT_KEYS.items() if not k.startswith("image_latency") and k != "image_jitter_ms"},
    "image": bool, "retired": bool, "display_name": str,
}


def builtin_models() -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {mid: {"image": False} for mid in TEXT_MODELS}
    models.update({mid: {"image": True, "output_token_limit": 32_768} for mid in IMAGE_MODELS})
    models.update({mid: {"retired": True} for mid in RETIRED_MODELS})
    return models


@dataclass(frozen=True)
class ModelSettings:
    model_id: str
    image: bool
    latency_ms: float
    jitter_ms: float
    limits: Limits
    image_max_px: int
    input_token_limit: int
    output_token_limit: int
    display_name: str


def _display_name(model_id: str) -> str:
    return " ".join(part.capitalize() for part in model_id.split("-"))


def resolve(model_id: str, defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> ModelSettings:
    """Effective settings of a served model: its own entry over the (image or text) defaults."""
    image = bool(entry.get("image", "image" in model_id))
    prefix = "image_" if image else ""
    merged = {**defaults, "latency_ms": defaults[f"{prefix}latency_ms"],
              "jitter_ms": defaults[f"{prefix}jitter_ms"], **entry}
    limits = Limits(rpm=int(merged["rpm"]), tpm=int(merged["tpm"]), ipm=int(merged["ipm"]),
                    rpd=int(merged["rpd"]), window_s=float(merged["window_s"]))
    return ModelSettings(
        model_id=model_id, image=image, latency_ms=float(merged["latency_ms"]),
        jitter_ms=float(merged["jitter_ms"]), limits=limits, image_max_px=int(merged["image_max_px"]),
        input_token_limit=int(merged["input_token_limit"]), output_token_limit=int(merged["output_token_limit"]),
        display_name=str(merged.get("display_name") or _display_name(model_id)),
    )
