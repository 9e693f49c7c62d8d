"""Every environment variable genpool reads, read once into a frozen Settings object.

Values come from the process environment, then from a ``.env`` file in the working directory for
anything the environment does not set. Nothing else in genpool reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from genpool.shared.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_IMAGE_MODEL = "gemini-3.1-flash-image"


class Secret:
    """A string that never shows itself in repr/str/logs; call ``reveal()`` where it is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    gemini_api_key: Secret = field(default_factory=lambda: Secret(""))
    gemini_base_url: str | None = None
    gemini_image_model: str | None = None
    enable_fallback: bool = True
    preferred_model: str | None = None
    models_file: Path | None = None
    s3_bucket: str = "genpool-results"
    s3_endpoint_url: str | None = None
    s3_prefix: str = "genpool"
    aws_region: str = "us-east-1"
    concurrency: int = 64
    job_deadline_s: float = 300.0
    max_limiter_wait_s: float = 5.0
    result_ttl_s: int = 7 * 24 * 3600
    spool_dir: Path = Path(".genpool-spool")
    log_format: str = "text"
    log_level: str = "INFO"
    heartbeat_s: float = 5.0
    redis_timeout_s: float = 5.0
    s3_timeout_s: float = 10.0
    metrics_port: int = 9464
    breaker_failures: int = 5  # transient failures within breaker_window_s that open a model's breaker
    breaker_window_s: float = 30.0
    breaker_open_s: float = 30.0  # first open period; doubled per failed half-open probe
    breaker_max_open_s: float = 300.0
    not_found_open_s: float = 3600.0  # a 404 (retired model) marks it unavailable this long

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = Path(".env")) -> Settings:
        env = _merged_env(environ, dotenv_path)
        try:
            return cls(**_parse(env))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def require_api_key(self) -> str:
        if not self.gemini_api_key:
            raise ConfigError("GEMINI_API_KEY is not set: put your Gemini API key in the environment or in .env")
        return self.gemini_api_key.reveal()


def _merged_env(environ: Mapping[str, str] | None, dotenv_path: Path | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def _parse(env: Mapping[str, str]) -> dict[str, object]:
    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    out: dict[str, object] = {
        "redis_url": text("REDIS_URL") or DEFAULT_REDIS_URL,
        "gemini_api_key": Secret(text("GEMINI_API_KEY") or ""),
        "gemini_base_url": text("GEMINI_BASE_URL"),
        "gemini_image_model": text("GEMINI_IMAGE_MODEL"),
        "enable_fallback": _bool(env, "GEMINI_ENABLE_FALLBACK", True),
        "preferred_model": text("GEMINI_PREFERRED_MODEL"),
        "models_file": Path(m) if (m := text("GENPOOL_MODELS_FILE")) else None,
        "s3_bucket": text("S3_BUCKET") or "genpool-results",
        "s3_endpoint_url": text("S3_ENDPOINT_URL"),
        "s3_prefix": (text("S3_PREFIX") or "genpool").strip("/"),
        "aws_region": text("AWS_DEFAULT_REGION") or "us-east-1",
        "spool_dir": Path(text("GENPOOL_SPOOL_DIR") or ".genpool-spool"),
        "log_format": _choice(env, "GENPOOL_LOG_FORMAT", ("text", "json"), "text"),
        "log_level": (text("GENPOOL_LOG_LEVEL") or "INFO").upper(),
    }
    out.update(_numbers(env))
    return out


_NUMBERS: dict[str, tuple[str, type, float]] = {
    "concurrency": ("GENPOOL_CONCURRENCY", int, 1),
    "job_deadline_s": ("GENPOOL_JOB_DEADLINE_S", float, 1),
    "max_limiter_wait_s": ("GENPOOL_MAX_LIMITER_WAIT_S", float, 0),
    "result_ttl_s": ("GENPOOL_RESULT_TTL_S", int, 60),
    "heartbeat_s": ("GENPOOL_HEARTBEAT_S", float, 0.5),
    "redis_timeout_s": ("GENPOOL_REDIS_TIMEOUT_S", float, 0.1),
    "s3_timeout_s": ("GENPOOL_S3_TIMEOUT_S", float, 0.1),
    "metrics_port": ("GENPOOL_METRICS_PORT", int, 1),
    "breaker_failures": ("GENPOOL_BREAKER_FAILURES", int, 1),
    "breaker_window_s": ("GENPOOL_BREAKER_WINDOW_S", float, 0.1),
    "breaker_open_s": ("GENPOOL_BREAKER_OPEN_S", float, 0.1),
    "breaker_max_open_s": ("GENPOOL_BREAKER_MAX_OPEN_S", float, 0.1),
    "not_found_open_s": ("GENPOOL_NOT_FOUND_OPEN_S", float, 1),
}


def _numbers(env: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for attr, (name, kind, minimum) in _NUMBERS.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        if value < minimum:
            raise ValueError(f"{name}={raw!r} must be at least {minimum}")
        out[attr] = value
    return out


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r}: use true or false")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in allowed:
        raise ValueError(f"{name}={raw!r}: use one of {', '.join(allowed)}")
    return raw
