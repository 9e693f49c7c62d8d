"""The simulator's mutable runtime state: model overrides, quotas, faults, counters; reset to the config."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from genpool.sim import catalog
from genpool.sim.catalog import ModelSettings
from genpool.sim.config import SimConfig, check_table
from genpool.sim.errors import ConfigError
from genpool.sim.faults import FaultBoard, FaultSpec, parse_faults
from genpool.sim.quota import Cost, ModelQuota, Violation
from genpool.sim.reqlog import RequestLog
from genpool.sim.stats import Gauges, Record, Stats


class Simulator:
    """Shared by all handler threads; every mutation is under one lock (a few microseconds per request)."""

    def __init__(self, config: SimConfig, log: RequestLog | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = self._configured = config
        self.clock = clock
        self.log = log or RequestLog(None)
        self.started_s = clock()
        self.gauges = Gauges("open_connections", "hanging")
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the freshly started state: config faults re-armed from now, counters and windows empty."""
        with self._lock:
            self.config = self._configured
            self.reset_s = self.clock()
            self._defaults: dict[str, Any] = dict(self.config.defaults)
            self._overrides: dict[str, dict[str, Any]] = {}
            self._settings: dict[str, ModelSettings | None] = {}
            self._quotas: dict[str, ModelQuota] = {}
            self.stats = Stats()
            self.rng = random.Random(self.config.seed)
            self._fault_posts = 0
            self.faults = FaultBoard(self.config.faults, self.reset_s, self.config.seed)

    def set_api_keys(self, api_keys: frozenset[str]) -> None:
        """Accept only these keys from now on (a key revoked while its clients run); reset restores the config's."""
        with self._lock:
            self.config = dataclasses.replace(self.config, api_keys=api_keys)

    # -- models ---------------------------------------------------------------------------------------

    def _entry(self, model_id: str) -> dict[str, Any] | None:
        known = model_id in self.config.models or model_id in self._overrides
        if not known and self.config.unknown_models == "404":
            return None
        return {**self.config.models.get(model_id, {}), **self._overrides.get(model_id, {})}

    def model(self, model_id: str) -> tuple[ModelSettings | None, str]:
        """(settings, "") for a served model, else (None, "retired_model" | "unknown_model")."""
        with self._lock:
            if model_id not in self._settings:
                entry = self._entry(model_id)
                served = entry is not None and not entry.get("retired", False)
                self._settings[model_id] = catalog.resolve(model_id, self._defaults, entry) if served else None
            settings = self._settings[model_id]
            if settings is not None:
                return settings, ""
            return None, "retired_model" if self._entry(model_id) is not None else "unknown_model"

    def served_models(self) -> list[ModelSettings]:
        with self._lock:
            ids = list(dict.fromkeys([*self.config.models, *self._overrides]))
        found = (self.model(model_id)[0] for model_id in ids)
        return [settings for settings in found if settings is not None]

    def override_models(self, body: Any) -> None:
        """Merge runtime `{"models": {id: {...}}, "defaults": {...}}` over the current settings."""
        if not isinstance(body, dict) or set(body) - {"models", "defaults"}:
            raise ConfigError('expected {"models": {id: {...}}, "defaults": {...}}')
        models = body.get("models", {})
        if not isinstance(models, dict):
            raise ConfigError("models must be an object of model id -> settings")
        checked = {mid.removeprefix("models/"): check_table(f"models.{mid}", entry, catalog.MODEL_KEYS)
                   for mid, entry in models.items()}
        defaults = check_table("defaults", body.get("defaults", {}), catalog.DEFAULT_KEYS)
        with self._lock:
            self._defaults.update(defaults)
            for model_id, entry in checked.items():
                self._overrides[model_id] = {**self._overrides.get(model_id, {}), **entry}
            self._settings.clear()

    # -- faults and quota -----------------------------------------------------------------------------

    def replace_faults(self, raw: Any) -> tuple[FaultSpec, ...]:
        specs = parse_faults(raw)
        with self._lock:
            # A fresh, reproducible RNG per POST: the n-th POST after a reset always rolls the same way.
            self._fault_posts += 1
            seed = self.config.seed * 1_000_003 + self._fault_posts
        self.faults = FaultBoard(specs, self.clock(), seed)
        return specs

    def admit(self, settings: ModelSettings, now_s: float, cost: Cost) -> list[Violation]:
        with self._lock:
            quota = self._quotas.setdefault(settings.model_id, ModelQuota())
            return quota.admit(now_s, cost, settings.limits)

    def latency_s(self, settings: ModelSettings) -> float:
        jitter_ms = self.rng.uniform(-settings.jitter_ms, settings.jitter_ms) if settings.jitter_ms else 0.0
        return max(0.0, settings.latency_ms + jitter_ms) / 1000.0

    # -- records --------------------------------------------------------------------------------------

    def record(self, record: Record) -> None:
        self.stats.add(record)
        self.log.write(record.as_json())

    def _quota_view(self, model_id: str, now_s: float) -> dict[str, Any]:
        settings, _ = self.model(model_id)
        if settings is None:
            return {}
        limits = settings.limits
        with self._lock:
            quota = self._quotas.get(model_id) or ModelQuota()
            return {"limits": {"rpm": limits.rpm, "tpm": limits.tpm, "ipm": limits.ipm, "rpd": limits.rpd},
                    "window_s": limits.window_s, "window": quota.occupancy(now_s, limits.window_s),
                    "peak_window": quota.peaks(), "day_requests": quota.daily.used(now_s)}

    def snapshot(self) -> dict[str, Any]:
        now_s = self.clock()
        models = self.stats.snapshot()
        return {"uptime_s": round(now_s - self.started_s, 3), "since_reset_s": round(now_s - self.reset_s, 3),
                **self.gauges.snapshot(),
                "models": {mid: {**counters, **self._quota_view(mid, now_s)} for mid, counters in models.items()}}
