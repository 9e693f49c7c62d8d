"""The storage: one shared admission record per model in Redis, one Lua round trip per call.

Every script touches only one model's keys (same ``{m:<model>}`` hash tag, so one Cluster slot) and
takes "now" from Redis's clock. Redis failures surface as ``LimiterUnavailable``: the caller fails
closed (no Gemini call without a grant).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import redis
from redis import exceptions as rexc
from redis.client import Pipeline

from genpool.shared import keys
from genpool.shared.errors import ConfigError, LimiterUnavailable
from genpool.shared.ratelimit.days import current_pacific_offset_ms
from genpool.shared.ratelimit.decision import BudgetHold, Decision, from_reply, is_unconfigured
from genpool.shared.ratelimit.limits import FIELD_NAMES, ModelLimits, fields_from_text
from genpool.shared.ratelimit.scripts import Scripts, evalsha

#: What a 429 hit: "minute" = every window dimension (the provider rarely says which), one of them, or
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


class Budgets(Protocol):
    """Which budget records a call to a model is held in (``shared/ratelimit/budgets.BudgetView``)."""

    def keys_for(self, model: str) -> tuple[tuple[bytes, ...], tuple[str, ...]]: ...


@dataclass(frozen=True)
class LimitsChange:
    """What a write of the limits did: the effective limits before and after, and the override in force."""

    before: ModelLimits | None
    after: ModelLimits
    override: dict[str, str]

    @property
    def changed(self) -> dict[str, tuple[object, object]]:
        return self.after.changes_from(self.before) if self.before != self.after else {}


class RedisLimiter:
    """Shared per-model rate limiter; ``defaults`` (the catalog) seed models Redis has no limits for."""

    def __init__(self, redis: redis.Redis, defaults: Mapping[str, ModelLimits] | None = None,
                 probe_ms: int = 30_000, utc_offset_ms: Callable[[], int] = current_pacific_offset_ms,
                 budgets: Budgets | None = None) -> None:
        self._redis = redis
        self._budgets = budgets
        self._defaults = dict(defaults or {})
        self._probe_ms = probe_ms
        self._utc_offset_ms = utc_offset_ms
        self._scripts = Scripts.register(redis)
        self._keys: dict[str, tuple[bytes, bytes, bytes, bytes]] = {}

    # -- the hot path: once per Gemini call ---------------------------------------------------------

    def acquire(self, model: str, requests: int = 1, tokens: int = 0, images: int = 0,
                max_wait_ms: int = 0, cost_micro: int = 0) -> Decision:
        """Reserve ``requests``/``tokens``/``images`` in every dimension at one start time, or nothing; where a
        budget is set, ``cost_micro`` (the call's estimated cost) must fit it too and is held until settle."""
        command, budget = self._acquire_command(model, requests, tokens, images, max_wait_ms, cost_micro)
        reply = self._call(model, "acquire", self._scripts.acquire, command)
        if is_unconfigured(reply):
            self.seed(model, self._default_for(model))
            reply = self._call(model, "acquire", self._scripts.acquire, command)
        if is_unconfigured(reply):  # deleted again in between: give up, closed
            raise ConfigError(f"rate limiter has no limits for model {model!r}")
        return _decision(reply, budget)

    def acquire_on(self, pipeline: Pipeline, model: str, requests: int = 1, tokens: int = 0, images: int = 0,
                   max_wait_ms: int = 0, cost_micro: int = 0) -> Callable[[object], Decision | None]:
        """``acquire`` queued on someone else's pipeline, to ride its round trip; the function returned reads
        the reply. It answers None where there is no decision to use (the script is not loaded in this Redis
        yet, the model has no limits yet, any error reply): the caller then acquires as usual, which loads
        the script and seeds the limits. No error: the pipeline is run with ``raise_on_error=False``."""
        command, budget = self._acquire_command(model, requests, tokens, images, max_wait_ms, cost_micro)
        pipeline.execute_command("EVALSHA", self._scripts.acquire.sha, *command)

        def read(reply: object) -> Decision | None:
            if not isinstance(reply, bytes) or is_unconfigured(reply):
                return None
            return _decision(reply, budget)

        return read

    def _acquire_command(self, model: str, requests: int, tokens: int, images: int, max_wait_ms: int,
                         cost_micro: int) -> tuple[tuple[object, ...], BudgetHold | None]:
        """The acquire script's numkeys, keys and arguments; and the hold a grant takes where a budget is set."""
        if requests < 0 or tokens < 0 or images < 0 or max_wait_ms < 0 or cost_micro < 0:
            _require_non_negative(requests=requests, tokens=tokens, images=images, max_wait_ms=max_wait_ms,
                                  cost_micro=cost_micro)
        budget_keys, scopes = self._budgets.keys_for(model) if cost_micro and self._budgets else ((), ())
        limits_key, window_key, state_key, slots_key = self._model_keys(model)
        command: tuple[object, ...] = (4, limits_key, window_key, state_key, slots_key, requests, tokens, images,
                                       max_wait_ms, self._utc_offset_ms(), self._probe_ms)
        if not budget_keys:  # with no budget set, acquire reads nothing more
            return command, None
        command = (4 + len(budget_keys), *command[1:5], *budget_keys, *command[5:], cost_micro)
        return command, BudgetHold(budget_keys, scopes, cost_micro)

    def settle(self, model: str, start_ms: int, reserved_tokens: int, actual_tokens: int,
               hold: BudgetHold | None = None, actual_micro: int = 0) -> dict[str, float]:
        """The call started at ``start_ms`` used ``actual_tokens``: refund or charge the difference there; and
        cost ``actual_micro``, which replaces its ``hold`` in the budgets (same script call). The reply gains
        ``alert:<scope>`` = 50 / 80 / 100 for a budget whose spend crossed that level now (once fleet-wide)."""
        budget = (hold.keys, (hold.micro, actual_micro)) if hold else None
        used = self._adjust(model, start_ms, (0, actual_tokens - reserved_tokens, 0), 0, "settle", budget)
        if hold:
            for name in [n for n in used if n.startswith("alert:")]:
                used[f"alert:{hold.scopes[int(name[6:]) - 1]}"] = used.pop(name)
        return used

    def release(self, model: str, start_ms: int, requests: int = 1, tokens: int = 0,
                images: int = 0) -> dict[str, float]:
        """Give back a grant that was never used (and today's request count)."""
        _require_non_negative(requests=requests, tokens=tokens, images=images)
        return self._adjust(model, start_ms, (-requests, -tokens, -images), requests, "release")

    def penalize(self, model: str, retry_after_ms: int, scope: Scope = "minute") -> int:
        """A 429: cool the fleet down for this model and count ``scope``'s window as full; returns the end."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
        _require_non_negative(retry_after_ms=retry_after_ms)
        limits_key, window_key, state_key, slots_key = self._model_keys(model)
        command = (4, limits_key, window_key, state_key, slots_key, retry_after_ms, scope, self._utc_offset_ms())
        return int(self._call(model, "penalize", self._scripts.penalize, command))

    def levels(self, model: str) -> dict[str, float]:
        """What the window counts for the next possible start per limited dimension, ``ahead_ms`` (how far
        ahead starts are booked) and ``rpd`` (requests left today)."""
        limits_key, window_key, _, slots_key = self._model_keys(model)
        reply = self._call(model, "read levels", self._scripts.levels,
                           (3, limits_key, window_key, slots_key, self._utc_offset_ms()))
        return _pairs(reply)  # type: ignore[arg-type]  # levels.lua answers a flat array

    # -- the limits: the catalog wins at start, an operator's override until reset ------------------

    def sync(self, model: str, catalog: ModelLimits) -> LimitsChange:
        """A worker starting: its catalog's limits become the model's (the override stays on top)."""
        return self._write_limits(model, "sync", catalog, {})

    def seed(self, model: str, limits: ModelLimits) -> bool:
        """Write ``limits`` only if the model has none yet; True when written."""
        return self._write_limits(model, "seed", limits, {}).before is None

    def set_limits(self, model: str, **fields: float) -> ModelLimits:
        """An operator's override of some fields (validated); kept until ``reset_limits``."""
        unknown = set(fields) - set(FIELD_NAMES)
        if unknown:
            raise ConfigError(f"unknown limit fields {sorted(unknown)}; known: {', '.join(FIELD_NAMES)}")
        current = self.get_limits(model) or self._defaults.get(model, ModelLimits())
        validated = ModelLimits(**{**current.__dict__, **fields_from_text({k: str(v) for k, v in fields.items()})})
        override = {name: value for name, value in validated.to_hash().items() if _named(name, fields)}
        return self._write_limits(model, "set", self._defaults.get(model), override).after

    def reset_limits(self, model: str) -> ModelLimits:
        """Drop the override: back to the catalog's limits."""
        return self._write_limits(model, "reset", self._defaults.get(model), {}).after

    def get_limits(self, model: str) -> ModelLimits | None:
        """The effective limits (what acquire uses), or None before the model's first use."""
        with _boundary("read limits", model):
            raw = self._redis.hgetall(keys.model_limits(model))
        return ModelLimits.from_hash(raw) if raw else None

    def get_override(self, model: str) -> dict[str, str]:
        with _boundary("read limits", model):
            raw = self._redis.hgetall(keys.model_limits_override(model))
        return _text_hash(raw)  # type: ignore[arg-type]  # a client without decode_responses: bytes

    def get_catalog(self, model: str) -> ModelLimits | None:
        """The limits the last worker to start had in its catalog."""
        with _boundary("read limits", model):
            raw = self._redis.hgetall(keys.model_limits_catalog(model))
        return ModelLimits.from_hash(raw) if raw else None

    def _write_limits(self, model: str, mode: str, catalog: ModelLimits | None,
                      override: Mapping[str, str]) -> LimitsChange:
        items = [part for pair in (catalog.to_hash().items() if catalog else ()) for part in pair]
        args: tuple[str | int, ...] = (mode, len(items), *items,
                                       *(part for pair in override.items() for part in pair))
        key_list = [keys.model_limits(model), keys.model_limits_catalog(model), keys.model_limits_override(model)]
        with _boundary(f"{mode} limits", model):
            before, after = self._scripts.limits(keys=key_list, args=args)
        current = ModelLimits.from_hash(_items(after))
        return LimitsChange(ModelLimits.from_hash(_items(before)) if before else None, current,
                            self.get_override(model))

    # -- plumbing -----------------------------------------------------------------------------------

    def _adjust(self, model: str, start_ms: int, deltas: tuple[int, int, int], give_back: int,
                operation: str, budget: tuple[tuple[bytes, ...], tuple[int, int]] | None = None) -> dict[str, float]:
        _, window_key, _, slots_key = self._model_keys(model)
        budget_keys, money = budget or ((), ())
        command = (2 + len(budget_keys), window_key, slots_key, *budget_keys, start_ms, *deltas, give_back,
                   self._utc_offset_ms(), *money)
        return _pairs(self._call(model, operation, self._scripts.settle, command))  # type: ignore[arg-type]

    def _model_keys(self, model: str) -> tuple[bytes, bytes, bytes, bytes]:
        cached = self._keys.get(model)
        if cached is None:  # encoded once per model: acquire pays for every microsecond
            cached = self._keys[model] = (keys.model_limits(model).encode(), keys.model_window(model).encode(),
                                          keys.model_state(model).encode(), keys.model_slots(model).encode())
        return cached

    def _call(self, model: str, operation: str, script: object, command: Sequence[object]) -> bytes:
        with _boundary(operation, model):
            return evalsha(self._redis, script, command)  # type: ignore[arg-type,no-any-return]

    def _default_for(self, model: str) -> ModelLimits:
        if model not in self._defaults:
            raise ConfigError(f"rate limiter has no limits for model {model!r}: add it to the catalog "
                              "or set them with `genpool limits set`")
        return self._defaults[model]


def _decision(reply: bytes, budget: BudgetHold | None) -> Decision:
    decision = from_reply(reply)
    return replace(decision, hold=budget) if budget and decision.granted else decision


def _named(hash_field: str, fields: Mapping[str, object]) -> bool:
    return (hash_field == "window_ms" and "window_s" in fields) or hash_field in fields


def _items(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _text_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _pairs(reply: Sequence[bytes]) -> dict[str, float]:
    return {reply[i].decode(): float(reply[i + 1]) for i in range(0, len(reply), 2)}


def _require_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
