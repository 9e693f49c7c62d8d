"""The storage: one shared budget per model in Redis, one Lua round trip per call.

Every script touches only one model's three keys (same ``{m:<model>}`` hash tag, so one Cluster slot)
and takes "now" from Redis's clock. Redis failures surface as ``LimiterUnavailable``: the caller
fails closed (no Gemini call without a grant).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import redis
from redis import exceptions as rexc

from genpool.shared import keys
from genpool.shared.errors import ConfigError, LimiterUnavailable
from genpool.shared.ratelimit.days import current_pacific_offset_ms
from genpool.shared.ratelimit.decision import Decision, from_reply, is_unconfigured
from genpool.shared.ratelimit.limits import FIELD_NAMES, ModelLimits
from genpool.shared.ratelimit.scripts import Scripts, evalsha

#: What a 429 hit: "minute" = every per-window bucket (the provider rarely says which), one of them, or
#: "day" (a per-day quota: cool down until the next Pacific midnight).
Scope = Literal["minute", "rpm", "tpm", "ipm", "day"]
SCOPES: frozenset[str] = frozenset(("minute", "rpm", "tpm", "ipm", "day"))

# Unreachable, timed out, still loading, or a replica after failover: all mean "no budget to give".
_UNREACHABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError)


@contextmanager
def _boundary(operation: str, model: str) -> Iterator[None]:
    try:
        yield
    except _UNREACHABLE as exc:
        raise LimiterUnavailable(f"rate limiter cannot {operation} for {model!r}: {exc}") from exc


class RedisLimiter:
    """Shared per-model rate limiter; ``defaults`` (the catalog) seed models Redis has no limits for."""

    def __init__(self, redis: redis.Redis, defaults: Mapping[str, ModelLimits] | None = None,
                 probe_ms: int = 30_000, utc_offset_ms: Callable[[], int] = current_pacific_offset_ms) -> None:
        self._redis = redis
        self._defaults = dict(defaults or {})
        self._probe_ms = probe_ms
        self._utc_offset_ms = utc_offset_ms
        self._scripts = Scripts.register(redis)
        self._acquire_keys: dict[str, tuple[int | bytes, ...]] = {}

    def acquire(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0,
                max_wait_ms: int = 0) -> Decision:
        """Take ``requests``/``tokens``/``images`` from every dimension at once, or nothing."""
        if requests < 0 or tokens < 0 or images < 0 or max_wait_ms < 0:
            _require_non_negative(requests=requests, tokens=tokens, images=images, max_wait_ms=max_wait_ms)
        # The hot path (every Gemini call): EVALSHA with keys encoded once per model, no extra layers.
        command = (*self._numkeys_and_keys(model), requests, tokens, images, max_wait_ms,
                   self._utc_offset_ms(), self._probe_ms)
        reply = self._call_acquire(model, command)
        if is_unconfigured(reply):
            self.seed(model, self._default_for(model))
            reply = self._call_acquire(model, command)
        if is_unconfigured(reply):  # deleted again in between: give up, closed
            raise ConfigError(f"rate limiter has no limits for model {model!r}")
        return from_reply(reply)

    def settle(self, model: str, reserved_tokens: int, actual_tokens: int) -> dict[str, float]:
        """Refund (clamped at capacity) or charge the difference between reserved and used tokens."""
        return self._credit(model, (0, reserved_tokens - actual_tokens, 0, 0), "settle")

    def release(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0) -> dict[str, float]:
        """Give back a grant that was never used (clamped at capacity; today's request count too)."""
        _require_non_negative(requests=requests, tokens=tokens, images=images)
        return self._credit(model, (requests, tokens, images, requests), "release")

    def penalize(self, model: str, retry_after_ms: int, scope: Scope = "minute") -> int:
        """A 429: cool the whole fleet down for this model and drain ``scope``; returns the cooldown end."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
        _require_non_negative(retry_after_ms=retry_after_ms)
        with _boundary("penalize", model):
            until_ms = self._scripts.penalize(keys=_keys(model),
                                              args=(retry_after_ms, scope, self._utc_offset_ms()))
        return int(until_ms)

    def levels(self, model: str) -> dict[str, float]:
        """Bucket levels refilled to now (negative = reserved ahead), plus ``rpd``: requests left today."""
        with _boundary("read levels", model):
            reply = self._scripts.levels(keys=_keys(model)[:2], args=(self._utc_offset_ms(),))
        return _pairs(reply)

    def seed(self, model: str, limits: ModelLimits) -> bool:
        """Write ``limits`` only if the model has none yet (an operator's runtime change survives)."""
        flat = [part for item in limits.to_hash().items() for part in item]
        with _boundary("seed limits", model):
            return bool(self._scripts.seed(keys=[keys.model_limits(model)], args=flat))

    def set_limits(self, model: str, **fields: float) -> ModelLimits:
        """Overwrite some limit fields at run time (validated); the next acquire anywhere uses them."""
        unknown = set(fields) - FIELD_NAMES
        if unknown:
            raise ConfigError(f"unknown limit fields {sorted(unknown)}; known: {sorted(FIELD_NAMES)}")
        stored = self.get_limits(model)
        updated = dataclasses.replace(stored or self._defaults.get(model, ModelLimits()), **fields)  # type: ignore[arg-type]
        # Only the named fields over a stored hash (another operator may be changing the others);
        # everything when the model had no limits yet, so the unnamed ones are not left unlimited.
        written = {name: value for name, value in updated.to_hash().items()
                   if stored is None or _is_written(name, fields)}
        with _boundary("set limits", model):
            self._redis.hset(keys.model_limits(model), mapping=written)  # type: ignore[arg-type]
        return updated

    def get_limits(self, model: str) -> ModelLimits | None:
        with _boundary("read limits", model):
            raw = self._redis.hgetall(keys.model_limits(model))
        return ModelLimits.from_hash(raw) if raw else None

    def _numkeys_and_keys(self, model: str) -> tuple[int | bytes, ...]:
        cached = self._acquire_keys.get(model)
        if cached is None:
            cached = self._acquire_keys[model] = (3, *(key.encode() for key in _keys(model)))
        return cached

    def _call_acquire(self, model: str, command: Sequence[int | bytes]) -> bytes:
        try:
            return evalsha(self._redis, self._scripts.acquire, command)  # type: ignore[no-any-return]
        except _UNREACHABLE as exc:
            raise LimiterUnavailable(f"rate limiter cannot acquire for {model!r}: {exc}") from exc

    def _credit(self, model: str, amounts: Sequence[int], operation: str) -> dict[str, float]:
        _, limits_key, bucket_key, _ = self._numkeys_and_keys(model)
        with _boundary(operation, model):  # once per Gemini call too (settle): the lean path, like acquire
            reply = evalsha(self._redis, self._scripts.settle,
                            (2, limits_key, bucket_key, *amounts, self._utc_offset_ms()))
        return _pairs(reply)

    def _default_for(self, model: str) -> ModelLimits:
        if model not in self._defaults:
            raise ConfigError(f"rate limiter has no limits for model {model!r}: add it to the catalog "
                              "or seed its limits in Redis")
        return self._defaults[model]


def _keys(model: str) -> list[str]:
    return [keys.model_limits(model), keys.model_bucket(model), keys.model_state(model)]


def _is_written(hash_field: str, fields: Mapping[str, object]) -> bool:
    return (hash_field == "window_ms" and "window_s" in fields) or hash_field in fields


def _pairs(reply: Sequence[bytes]) -> dict[str, float]:
    return {reply[i].decode(): float(reply[i + 1]) for i in range(0, len(reply), 2)}


def _require_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
