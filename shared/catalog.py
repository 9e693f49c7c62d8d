"""The model catalog: per-model limits, retries, timeout and prices, and a model chain per job kind.

Model IDs are configuration. The catalog is a TOML file (``GENPOOL_MODELS_FILE``, a path or the name
of a shipped preset); ``shared/presets/default.toml`` is used when none is set.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from genpool.shared.contract import JOB_KINDS, kinds_producing
from genpool.shared.errors import ConfigError
from genpool.shared.ratelimit.limits import DEFAULT_GUARD_MS, ModelLimits
from genpool.shared.settings import Settings

PRESETS_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: str = "text"  # "text" or "image": what the model produces
    rpm: int = 0  # 0 = unlimited
    tpm: int = 0
    rpd: int = 0
    ipm: int = 0
    window_s: float = 60.0
    safety: float = 1.0
    guard_ms: int = DEFAULT_GUARD_MS
    max_retries: int = 2
    timeout_s: float = 30.0
    stall_s: float = 0.0  # a call this old, with no later call answered, counts as a breaker failure; 0 = off
    input_token_limit: int = 1_048_576
    output_token_limit: int = 65_536
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    price_per_image: float = 0.0

    @property
    def limits(self) -> ModelLimits:
        """The model's quota as the limiter reads it."""
        return ModelLimits(rpm=self.rpm, tpm=self.tpm, rpd=self.rpd, ipm=self.ipm, window_s=self.window_s,
                           safety=self.safety, guard_ms=self.guard_ms)

    def cost_usd(self, prompt_tokens: int, output_tokens: int, images: int = 0) -> float:
        usd = (prompt_tokens * self.price_input_per_mtok + output_tokens * self.price_output_per_mtok) / 1e6
        return round(usd + images * self.price_per_image, 8)


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelSpec]
    chains: Mapping[str, tuple[str, ...]]
    enable_fallback: bool = True

    def spec(self, model: str) -> ModelSpec:
        try:
            return self.models[model]
        except KeyError:
            raise ConfigError(f"model {model!r} is not in the catalog (known: {', '.join(sorted(self.models))})") from None

    def chain_for(self, kind: str, override: str | None = None, allow_fallback: bool = True) -> tuple[str, ...]:
        """The models a job of ``kind`` tries, in order."""
        chain = self.chains[kind]
        if override:
            chain = (override, *[m for m in chain if m != override])
        if not (allow_fallback and self.enable_fallback):
            chain = chain[:1]
        return chain


def load_catalog(settings: Settings) -> Catalog:
    path = _resolve(settings.models_file)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the model catalog {path}: {exc}") from exc
    catalog = parse_catalog(data, source=str(path))
    return apply_settings(catalog, settings)


def _resolve(models_file: Path | None) -> Path:
    if models_file is None:
        return PRESETS_DIR / "default.toml"
    preset = PRESETS_DIR / f"{models_file}.toml"
    if not models_file.suffix and preset.is_file():
        return preset
    if not models_file.is_file():
        raise ConfigError(f"GENPOOL_MODELS_FILE={models_file}: no such file (or preset: default, seed)")
    return models_file


_SPEC_FIELDS = {f.name for f in fields(ModelSpec)} - {"id"}


def parse_catalog(data: Mapping[str, Any], source: str = "catalog") -> Catalog:
    defaults = dict(data.get("defaults", {}))
    models = {mid: _spec(mid, {**defaults, **body}, source) for mid, body in data.get("models", {}).items()}
    chains: dict[str, tuple[str, ...]] = {}
    for kind in JOB_KINDS:
        chain = tuple(data.get("chains", {}).get(kind, ()))
        if not chain:
            raise ConfigError(f"{source}: [chains] has no {kind!r} chain")
        unknown = [m for m in chain if m not in models]
        if unknown:
            raise ConfigError(f"{source}: chain {kind!r} names models not in [models]: {', '.join(unknown)}")
        chains[kind] = chain
    return Catalog(models=models, chains=chains)


_RETIRED_FIELDS = {"burst", "token_burst"}  # the token buckets' shape: the exact window has none


def _spec(model_id: str, body: Mapping[str, Any], source: str) -> ModelSpec:
    retired = set(body) & _RETIRED_FIELDS
    if retired:
        raise ConfigError(f"{source}: model {model_id!r}: {', '.join(sorted(retired))} no longer exist (the limiter "
                          "admits against the exact window; see docs/ratelimit.md): remove them")
    unknown = set(body) - _SPEC_FIELDS
    if unknown:
        raise ConfigError(f"{source}: model {model_id!r} has unknown keys: {', '.join(sorted(unknown))}")
    try:
        spec = ModelSpec(id=model_id, **body)
    except TypeError as exc:
        raise ConfigError(f"{source}: model {model_id!r}: {exc}") from exc
    if spec.kind not in ("text", "image"):
        raise ConfigError(f"{source}: model {model_id!r}: kind must be 'text' or 'image'")
    if spec.max_retries < 0 or spec.timeout_s <= 0 or spec.stall_s < 0:
        raise ConfigError(f"{source}: model {model_id!r}: max_retries >= 0, timeout_s > 0 and stall_s >= 0")
    return spec


def apply_settings(catalog: Catalog, settings: Settings) -> Catalog:
    """GEMINI_IMAGE_MODEL heads the image chain; GEMINI_PREFERRED_MODEL pins its kind's chains."""
    models = dict(catalog.models)
    chains = dict(catalog.chains)
    if settings.gemini_image_model:
        head = settings.gemini_image_model
        models.setdefault(head, ModelSpec(id=head, kind="image"))
        chains["image"] = (head, *[m for m in chains["image"] if m != head])
    if settings.preferred_model:
        pinned = settings.preferred_model
        spec = models.setdefault(pinned, ModelSpec(id=pinned))
        for kind in kinds_producing("image" if spec.kind == "image" else "text"):
            chains[kind] = (pinned,)
    return replace(catalog, models=models, chains=chains, enable_fallback=settings.enable_fallback)
