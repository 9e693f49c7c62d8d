"""The model catalog: per-model limits, retries, timeout and prices, and a model chain per job kind.

Model IDs are configuration. The catalog is a TOML file (``GENPOOL_MODELS_FILE``, a path or the name
of a shipped preset); ``shared/presets/default.toml`` is used when none is set.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from genpool.shared.contract import JOB_KINDS, Output, kinds_producing
from genpool.shared.errors import ConfigError
from genpool.shared.ratelimit.limits import DEFAULT_GUARD_MS, ModelLimits
from genpool.shared.settings import Settings

PRESETS_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: Output = "text"  # what the model produces
    limits: ModelLimits = field(default_factory=ModelLimits)  # quota and margins (0 = unlimited)
    max_retries: int = 2
    timeout_s: float = 30.0
    stall_s: float = 0.0  # a call this old, with no later call answered, counts as a breaker failure; 0 = off
    input_token_limit: int = 1_048_576
    output_token_limit: int = 65_536
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    price_per_image: float = 0.0

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

    def chain_for(self, kind: str, override: str | None = None, allow_fallback: bool = True,
                  base: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The models a job of ``kind`` tries, in order (from ``base``: the live routing's chain, if given)."""
        chain = base or self.chains[kind]
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


class _ModelEntry(BaseModel):
    """One ``[models."<id>"]`` table (after ``[defaults]``): flat in the file, a ModelSpec in code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Output = "text"
    rpm: int = Field(0, ge=0, strict=True)
    tpm: int = Field(0, ge=0, strict=True)
    rpd: int = Field(0, ge=0, strict=True)
    ipm: int = Field(0, ge=0, strict=True)
    window_s: float = 60.0
    safety: float = 1.0
    guard_ms: int = Field(DEFAULT_GUARD_MS, ge=0, strict=True)
    max_retries: int = Field(2, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    stall_s: float = Field(0.0, ge=0)
    input_token_limit: int = Field(1_048_576, ge=1)
    output_token_limit: int = Field(65_536, ge=1)
    price_input_per_mtok: float = Field(0.0, ge=0)
    price_output_per_mtok: float = Field(0.0, ge=0)
    price_per_image: float = Field(0.0, ge=0)

    def spec(self, model_id: str) -> ModelSpec:
        values = self.model_dump()
        limits = ModelLimits(**{name: values.pop(name) for name in LIMIT_FIELDS})
        return ModelSpec(id=model_id, limits=limits, **values)


LIMIT_FIELDS = tuple(f.name for f in fields(ModelLimits))


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    defaults: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    chains: dict[str, list[str]] = Field(default_factory=dict)


def parse_catalog(data: Mapping[str, Any], source: str = "catalog") -> Catalog:
    try:
        raw = _CatalogFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{source}: {_problems(exc)}") from None
    models = {mid: _spec(mid, {**raw.defaults, **body}, source) for mid, body in raw.models.items()}
    chains: dict[str, tuple[str, ...]] = {}
    for kind in JOB_KINDS:
        chain = tuple(raw.chains.get(kind, ()))
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
    try:
        return _ModelEntry.model_validate(body).spec(model_id)
    except pydantic.ValidationError as exc:
        unknown = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden")
        if unknown:
            raise ConfigError(f"{source}: model {model_id!r} has unknown keys: {', '.join(unknown)}") from None
        raise ConfigError(f"{source}: model {model_id!r}: {_problems(exc)}") from None
    except ConfigError as exc:  # ModelLimits' own checks (window_s, safety, guard_ms)
        raise ConfigError(f"{source}: model {model_id!r}: {exc}") from None


def _problems(exc: pydantic.ValidationError) -> str:
    return "; ".join(_problem(err) for err in exc.errors())


def _problem(err: Any) -> str:
    where, ctx = ".".join(map(str, err["loc"])), err.get("ctx") or {}
    if err["type"] == "literal_error":
        return f"{where} must be {ctx['expected']}, got {err['input']!r}"
    bound = {"greater_than_equal": ">=", "greater_than": ">"}.get(err["type"])
    if bound:
        return f"{where} must be {bound} {ctx.get('ge', ctx.get('gt'))}, got {err['input']!r}"
    return f"{where}: {err['msg']}, got {err['input']!r}"


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
