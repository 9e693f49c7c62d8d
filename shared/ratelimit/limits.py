"""The limit: one model's quota as the provider states it, plus our margins. No math, no storage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from genpool.shared.errors import ConfigError

#: The bucket dimensions (refilled per window); ``rpd`` is a calendar-day counter, not a bucket.
BUCKET_DIMS = ("rpm", "tpm", "ipm")
DIMS = (*BUCKET_DIMS, "rpd")


@dataclass(frozen=True)
class ModelLimits:
    """Per-model quota (0 = unlimited) over ``window_s``; ``safety``/``burst`` shape the buckets."""

    rpm: int = 0
    tpm: int = 0
    rpd: int = 0
    ipm: int = 0
    window_s: float = 60.0
    safety: float = 0.99
    burst: float = 0.01
    token_burst: float = 0.05

    def __post_init__(self) -> None:
        for dim in DIMS:
            value = getattr(self, dim)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"limit {dim} must be an integer >= 0 (0 = unlimited), got {value!r}")
        if not (math.isfinite(self.window_s) and self.window_s >= 0.001):
            raise ConfigError(f"window_s must be >= 0.001, got {self.window_s!r}")
        for name in ("safety", "burst", "token_burst"):
            value = getattr(self, name)
            if not (0 < value <= 1):
                raise ConfigError(f"{name} must be in (0, 1], got {value!r}")

    @property
    def window_ms(self) -> int:
        return round(self.window_s * 1000)

    def burst_for(self, dim: str) -> float:
        return self.token_burst if dim == "tpm" else self.burst

    def to_hash(self) -> dict[str, str]:
        """The Redis hash form (``window_ms`` instead of ``window_s``, as the Lua scripts read it)."""
        out = {dim: str(getattr(self, dim)) for dim in DIMS}
        out["window_ms"] = str(self.window_ms)
        out.update({name: repr(float(getattr(self, name))) for name in ("safety", "burst", "token_burst")})
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> ModelLimits:
        """Inverse of ``to_hash``; missing fields take the defaults (the Lua side does the same)."""
        text = {_text(k): _text(v) for k, v in raw.items()}
        kwargs: dict[str, int | float] = {dim: int(text[dim]) for dim in DIMS if dim in text}
        if "window_ms" in text:
            kwargs["window_s"] = int(text["window_ms"]) / 1000
        kwargs.update({n: float(text[n]) for n in ("safety", "burst", "token_burst") if n in text})
        return cls(**kwargs)  # type: ignore[arg-type]


FIELD_NAMES = frozenset(f.name for f in fields(ModelLimits))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
