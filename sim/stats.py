"""Per-model counters behind GET /_sim/stats."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Record:
    """One answered generate call, as logged and counted (never the key, never the prompt)."""

    t: float
    model: str
    status: int  # 0 when no HTTP response was sent (hang, reset)
    reason: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    latency_ms: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "model": self.model, "status": self.status, "reason": self.reason,
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "images": self.images, "latency_ms": round(self.latency_ms, 1)}


@dataclass
class ModelStats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    quota_429: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0  # of 200 answers only: what Gemini would bill
    output_tokens: int = 0
    images: int = 0
    ok_per_s: Counter[int] = field(default_factory=Counter)  # unix second -> 200 answers admitted in it

    def add(self, record: Record) -> None:
        self.requests += 1
        self.by_status[str(record.status)] += 1
        self.by_reason[record.reason] += 1
        if record.reason.startswith("quota:"):
            self.quota_429[record.reason.removeprefix("quota:")] += 1
        if record.status == 200:
            self.prompt_tokens += record.prompt_tokens
            self.output_tokens += record.output_tokens
            self.images += record.images
            self.ok_per_s[int(record.t)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"requests": self.requests, "by_status": dict(self.by_status), "by_reason": dict(self.by_reason),
                "quota_429": {dim: self.quota_429.get(dim, 0) for dim in ("rpm", "tpm", "ipm", "rpd")},
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens, "images": self.images,
                "ok_per_s": {str(second): n for second, n in sorted(self.ok_per_s.items())}}


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ModelStats] = {}

    def add(self, record: Record) -> None:
        with self._lock:
            self._models.setdefault(record.model, ModelStats()).add(record)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {model: stats.snapshot() for model, stats in self._models.items()}


class Gauges:
    """Live levels (open connections, requests held by a hang fault); not cleared by a reset."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._levels = dict.fromkeys(names, 0)

    def add(self, name: str, delta: int) -> None:
        with self._lock:
            self._levels[name] = self._levels.get(name, 0) + delta

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._levels)
