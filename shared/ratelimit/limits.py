"""The limit: one model's quota as the provider states it, plus our margins. No math, no storage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from genpool.shared.errors import ConfigError

#: The trailing-window dimensions (the provider counts them over ``window_s``); ``rpd`` is a counter
#: per Pacific day. Their order is the Lua scripts' dimension index 1..3.
WINDOW_DIMS = ("rpm", "tpm", "ipm")
DIMS = (*WINDOW_DIMS, "rpd")

#: Arrival-jitter guard: a request counts for ``window_s + guard_ms`` instead of ``window_s``, so one
#: that reaches the provider later than its start time (thread wake-up, the SDK, the network) is still
#: counted when the provider counts it. The default is justified by measurement (docs/ratelimit.md,
#: "The guard"): the largest start-to-arrival spread seen under load, with room to spare.
DEFAULT_GUARD_MS = 500


@dataclass(frozen=True)
class ModelLimits:
    """Per-model quota (0 = unlimited) over a trailing ``window_s``; ``safety`` and ``guard_ms`` are margins."""

    rpm: int = 0
    tpm: int = 0
    rpd: int = 0
    ipm: int = 0
    window_s: float = 60.0
    safety: float = 1.0
    guard_ms: int = DEFAULT_GUARD_MS

    def __post_init__(self) -> None:
        for dim in DIMS:
            value = getattr(self, dim)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"limit {dim} must be an integer >= 0 (0 = unlimited), got {value!r}")
        if not (math.isfinite(self.window_s) and self.window_s >= 0.001):
            raise ConfigError(f"window_s must be >= 0.001, got {self.window_s!r}")
        if not (0 < self.safety <= 1):
            raise ConfigError(f"safety must be in (0, 1], got {self.safety!r}")
        if isinstance(self.guard_ms, bool) or not isinstance(self.guard_ms, int) or self.guard_ms < 0:
            raise ConfigError(f"guard_ms must be an integer >= 0, got {self.guard_ms!r}")

    @property
    def window_ms(self) -> int:
        return round(self.window_s * 1000)

    def to_hash(self) -> dict[str, str]:
        """The Redis hash form (``window_ms`` instead of ``window_s``, as the Lua scripts read it)."""
        out = {dim: str(getattr(self, dim)) for dim in DIMS}
        out["window_ms"] = str(self.window_ms)
        out["safety"] = repr(float(self.safety))
        out["guard_ms"] = str(self.guard_ms)
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> ModelLimits:
        """Inverse of ``to_hash``; missing fields take the defaults (the Lua side does the same), fields
        this version does not know (``burst`` of the old token buckets) are ignored."""
        text = {_text(k): _text(v) for k, v in raw.items()}  # bytes (redis-py) or str keys and values
        return cls(**fields_from_text(text))  # type: ignore[arg-type]  # names and types checked there

    def changes_from(self, old: ModelLimits | None) -> dict[str, tuple[object, object]]:
        """``{field: (old, new)}`` for every field that differs (all of them when there was none)."""
        before = old or ModelLimits()
        return {name: (getattr(before, name) if old else None, getattr(self, name))
                for name in FIELD_NAMES if old is None or getattr(before, name) != getattr(self, name)}


FIELD_NAMES = tuple(f.name for f in fields(ModelLimits))


def format_changes(changed: Mapping[str, tuple[object, object]]) -> str:
    """``rpm 1000 -> 60, tpm - -> 1000000`` for a log line."""
    return ", ".join(f"{name} {'-' if old is None else old} -> {new}" for name, (old, new) in changed.items())
_INT_FIELDS = frozenset((*DIMS, "guard_ms"))


def fields_from_text(text: Mapping[str, str]) -> dict[str, int | float]:
    """Typed ``ModelLimits`` keyword arguments from hash or command-line text (``window_ms`` or ``window_s``)."""
    kwargs: dict[str, int | float] = {}
    for name, value in text.items():
        try:
            if name in _INT_FIELDS:
                kwargs[name] = int(value)
            elif name == "window_ms":
                kwargs["window_s"] = int(value) / 1000
            elif name in ("window_s", "safety"):
                kwargs[name] = float(value)
        except ValueError:
            raise ConfigError(f"limit {name} must be a number, got {value!r}") from None
    return kwargs


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
