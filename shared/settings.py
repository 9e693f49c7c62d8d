"""Every environment variable genpool reads, read once into a frozen Settings object.

Values come from the process environment, then from a ``.env`` file in the working directory for
anything the environment does not set. Nothing else in genpool reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from genpool.shared.contract import JOB_KINDS
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


def _secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(str(value))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _is_int(value: Any) -> Any:
    # "2.5" for a count is a mistake, not 2 (pydantic would refuse it too, with a less helpful message).
    if isinstance(value, str) and not value.lstrip("+-").isdigit():
        raise ValueError("int_parsing")
    return value


def _bool(value: Any) -> Any:
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("bool_parsing")


def _on_budget(value: Any) -> Any:
    """``defer`` | ``fail`` for every kind, or per kind: ``defer,image=fail`` (the first item without a kind
    is the default)."""
    for item in str(value).lower().replace(" ", "").split(","):
        kind, _, policy = item.rpartition("=")
        if policy not in ("defer", "fail") or kind not in ("", *JOB_KINDS):
            raise ValueError("on_budget")
    return str(value).lower().replace(" ", "")


Bool = Annotated[bool, BeforeValidator(_bool)]
Count = Annotated[int, BeforeValidator(_is_int)]


class Settings(BaseModel):
    """Every setting, by the environment variable it comes from (the field's alias); frozen."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, arbitrary_types_allowed=True,
                              str_strip_whitespace=True)

    redis_url: str = Field(DEFAULT_REDIS_URL, alias="REDIS_URL")
    gemini_api_key: Annotated[Secret, BeforeValidator(_secret)] = Field(Secret(""), alias="GEMINI_API_KEY")
    gemini_base_url: str | None = Field(None, alias="GEMINI_BASE_URL")
    gemini_image_model: str | None = Field(None, alias="GEMINI_IMAGE_MODEL")
    enable_fallback: Bool = Field(True, alias="GEMINI_ENABLE_FALLBACK")
    preferred_model: str | None = Field(None, alias="GEMINI_PREFERRED_MODEL")
    models_file: Path | None = Field(None, alias="GENPOOL_MODELS_FILE")
    s3_bucket: str = Field("genpool-results", alias="S3_BUCKET")
    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL")
    s3_prefix: Annotated[str, AfterValidator(lambda v: v.strip("/"))] = Field("genpool", alias="S3_PREFIX")
    aws_region: str = Field("us-east-1", alias="AWS_DEFAULT_REGION")
    concurrency: Count = Field(64, ge=1, alias="GENPOOL_CONCURRENCY")
    job_deadline_s: float = Field(300.0, ge=1, alias="GENPOOL_JOB_DEADLINE_S")
    max_limiter_wait_s: float = Field(5.0, ge=0, alias="GENPOOL_MAX_LIMITER_WAIT_S")
    result_ttl_s: Count = Field(7 * 24 * 3600, ge=60, alias="GENPOOL_RESULT_TTL_S")
    spool_dir: Path = Field(Path(".genpool-spool"), alias="GENPOOL_SPOOL_DIR")
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field("text", alias="GENPOOL_LOG_FORMAT")
    log_level: Annotated[str, AfterValidator(str.upper)] = Field("INFO", alias="GENPOOL_LOG_LEVEL")
    heartbeat_s: float = Field(5.0, ge=0.5, alias="GENPOOL_HEARTBEAT_S")
    redis_timeout_s: float = Field(5.0, ge=0.1, alias="GENPOOL_REDIS_TIMEOUT_S")
    s3_timeout_s: float = Field(10.0, ge=0.1, alias="GENPOOL_S3_TIMEOUT_S")
    metrics_port: Count = Field(9464, ge=1, alias="GENPOOL_METRICS_PORT")
    # transient failures within breaker_window_s that open a model's breaker
    breaker_failures: Count = Field(5, ge=1, alias="GENPOOL_BREAKER_FAILURES")
    breaker_window_s: float = Field(30.0, ge=0.1, alias="GENPOOL_BREAKER_WINDOW_S")
    breaker_open_s: float = Field(30.0, ge=0.1, alias="GENPOOL_BREAKER_OPEN_S")  # doubled per failed probe
    breaker_max_open_s: float = Field(300.0, ge=0.1, alias="GENPOOL_BREAKER_MAX_OPEN_S")
    not_found_open_s: float = Field(3600.0, ge=1, alias="GENPOOL_NOT_FOUND_OPEN_S")  # a 404 marks it down this long
    # the response cache for jobs that do not say (`cache`): off, on, or temperature0 (jobs with temperature 0)
    cache_default: Annotated[Literal["off", "on", "temperature0"], BeforeValidator(_lower)] = Field(
        "off", alias="GENPOOL_CACHE")
    cache_ttl_s: Count = Field(86_400, ge=1, alias="GENPOOL_CACHE_TTL_S")
    # a job whose budgets are spent: defer (until the budget day turns or a budget is raised) or fail
    on_budget: Annotated[str, AfterValidator(_on_budget)] = Field("defer", alias="GENPOOL_ON_BUDGET")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = Path(".env")) -> Settings:
        env = _merged_env(environ, dotenv_path)
        given = {name: value.strip() for name, value in env.items() if name in _ALIASES and value.strip()}
        try:
            return cls.model_validate(given)
        except pydantic.ValidationError as exc:
            raise ConfigError(describe(exc, given)) from None

    def budget_policy(self, kind: str) -> str:
        """``defer`` or ``fail``: what a job of ``kind`` does when its budgets are spent."""
        policies = dict(item.rpartition("=")[::2] for item in self.on_budget.split(","))
        return policies.get(kind, policies.get("", "defer"))

    def require_api_key(self) -> str:
        if not self.gemini_api_key:
            raise ConfigError("GEMINI_API_KEY is not set: put your Gemini API key in the environment or in .env")
        return self.gemini_api_key.reveal()


_ALIASES = {str(f.alias) for f in Settings.model_fields.values()}
_FIELD_TYPES = {str(f.alias): ("int" if f.annotation is int else "float") for f in Settings.model_fields.values()}


def describe(exc: pydantic.ValidationError, given: Mapping[str, str]) -> str:
    """One line per bad variable, naming it: ``GENPOOL_CONCURRENCY='0' must be at least 1``."""
    return "; ".join(_problem(str(err["loc"][0]), given.get(str(err["loc"][0]), ""), err) for err in exc.errors())


def _problem(name: str, raw: str, err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "value_error":
        kind = str(ctx.get("error", ""))
    if kind in ("greater_than_equal", "greater_than"):
        return f"{name}={raw!r} must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind == "on_budget":
        return f"{name}={raw!r}: use defer or fail, or per kind e.g. defer,image=fail"
    if kind == "bool_parsing":
        return f"{name}={raw!r}: use true or false"
    if kind == "literal_error":
        return f"{name}={raw!r}: use one of {str(ctx.get('expected', '')).replace(' or ', ', ')}"
    if kind in ("int_parsing", "int_from_float", "float_parsing"):
        return f"{name}={raw!r} is not a valid {_FIELD_TYPES.get(name, 'number')}"
    return f"{name}={raw!r}: {err['msg']}"


def _merged_env(environ: Mapping[str, str] | None, dotenv_path: Path | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env
