"""Injected faults: which (model, time) windows answer with an error, hang, reset or slow down."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genpool.sim.errors import ConfigError

KINDS = ("503", "500", "404", "400", "hang", "reset", "slow", "cut")
HANG_DEFAULT_S = 600.0  # longer than any sane client timeout
_FIELDS = {"kind", "model", "start_s", "end_s", "rate", "delay_s"}


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    model: str = "*"
    start_s: float = 0.0
    end_s: float | None = None  # None = forever
    rate: float = 1.0
    delay_s: float = 0.0

    def active(self, model: str, elapsed_s: float) -> bool:
        if self.model not in ("*", model):
            return False
        return self.start_s <= elapsed_s and (self.end_s is None or elapsed_s < self.end_s)


def _number(raw: dict[str, Any], key: str, default: float | None) -> float | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"fault {key} must be a number, got {value!r}")
    return float(value)


def parse_fault(raw: Any) -> FaultSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"a fault must be an object, got {raw!r}")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown fault fields: {sorted(unknown)}")
    kind = str(raw.get("kind", ""))
    if kind not in KINDS:
        raise ConfigError(f"fault kind must be one of {KINDS}, got {kind!r}")
    rate = _number(raw, "rate", 1.0)
    if rate is None or not 0.0 <= rate <= 1.0:
        raise ConfigError(f"fault rate must be within 0..1, got {rate!r}")
    model = raw.get("model", "*")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"fault model must be a model id or '*', got {model!r}")
    default_delay_s = HANG_DEFAULT_S if kind == "hang" else 0.0
    return FaultSpec(kind=kind, model=model.removeprefix("models/"), start_s=_number(raw, "start_s", 0.0) or 0.0,
                     end_s=_number(raw, "end_s", None), rate=rate,
                     delay_s=_number(raw, "delay_s", default_delay_s) or 0.0)


def parse_faults(raw: Any) -> tuple[FaultSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError("faults must be a list")
    return tuple(parse_fault(item) for item in raw)


class FaultBoard:
    """The active fault list with its time origin; picks at most one fault per request."""

    def __init__(self, specs: Sequence[FaultSpec], origin_s: float, seed: int) -> None:
        self._specs = tuple(specs)
        self._origin_s = origin_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def specs(self) -> tuple[FaultSpec, ...]:
        return self._specs

    def pick(self, model: str, now_s: float) -> FaultSpec | None:
        """The first active fault for `model` whose rate roll hits (rolls use the seeded RNG)."""
        if not self._specs:
            return None
        elapsed_s = now_s - self._origin_s
        with self._lock:
            for spec in self._specs:
                if spec.active(model, elapsed_s) and (spec.rate >= 1.0 or self._rng.random() < spec.rate):
                    return spec
        return None

    def describe(self) -> list[dict[str, Any]]:
        return [{"kind": s.kind, "model": s.model, "start_s": s.start_s, "end_s": s.end_s, "rate": s.rate,
                 "delay_s": s.delay_s} for s in self._specs]
