"""Every environment variable genpool reads, read once into a frozen Settings object.

Values come from the process environment, then from an env file for anything the environment does not set:
``GENPOOL_ENV_FILE`` when it is set (it must exist), else the nearest ``.env`` from the working directory up.
Nothing else in genpool reads ``os.environ``; S3 credentials found here are handed to boto3 explicitly
(``shared/storage.py``), so a ``.env`` serves the workers, ``genpool health`` and ``genpool result --out``
alike. Secrets (the API key, the AWS secret key and session token) are ``Secret``s: they never print.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from genpool.shared.contract import JOB_KINDS
from genpool.shared.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_IMAGE_MODEL = "gemini-3.1-flash-image"
DEFAULT_ENV_FILE = Path(".env")  # from_env's default: the nearest .env from the working directory up
ENV_FILE_VARIABLE = "GENPOOL_ENV_FILE"
REDIS_SCHEMES = ("redis", "rediss", "unix")


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


def redacted_url(url: str) -> str:
    """The URL with its password (user:password@) hidden, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in REDIS_SCHEMES or not (parts.netloc or parts.path):
        raise ValueError("redis_url")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("redis_url") from None
    return value


def _http_url(value: str | None) -> str | None:
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("http_url")
    return value


HttpUrl = Annotated[str | None, AfterValidator(_http_url)]


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

    redis_url: Annotated[str, AfterValidator(_redis_url)] = Field(DEFAULT_REDIS_URL, alias="REDIS_URL")
    gemini_api_key: Annotated[Secret, BeforeValidator(_secret)] = Field(Secret(""), alias="GEMINI_API_KEY")
    gemini_base_url: HttpUrl = Field(None, alias="GEMINI_BASE_URL")
    gemini_image_model: str | None = Field(None, alias="GEMINI_IMAGE_MODEL")
    enable_fallback: Bool = Field(True, alias="GEMINI_ENABLE_FALLBACK")
    preferred_model: str | None = Field(None, alias="GEMINI_PREFERRED_MODEL")
    models_file: Path | None = Field(None, alias="GENPOOL_MODELS_FILE")
    s3_bucket: str = Field("genpool-results", alias="S3_BUCKET")
    s3_endpoint_url: HttpUrl = Field(None, alias="S3_ENDPOINT_URL")
    s3_prefix: Annotated[str, AfterValidator(lambda v: v.strip("/"))] = Field("genpool", alias="S3_PREFIX")
    aws_region: str = Field("us-east-1", alias="AWS_DEFAULT_REGION")
    # Given to boto3 explicitly when set (a .env counts); otherwise boto3's own chain (profile, role, ...).
    aws_access_key_id: str | None = Field(None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: Annotated[Secret, BeforeValidator(_secret)] = Field(Secret(""),
                                                                               alias="AWS_SECRET_ACCESS_KEY")
    aws_session_token: Annotated[Secret, BeforeValidator(_secret)] = Field(Secret(""), alias="AWS_SESSION_TOKEN")
    aws_profile: str | None = Field(None, alias="AWS_PROFILE")
    concurrency: Count = Field(64, ge=1, alias="GENPOOL_CONCURRENCY")
    job_deadline_s: float = Field(300.0, ge=1, alias="GENPOOL_JOB_DEADLINE_S")
    max_limiter_wait_s: float = Field(5.0, ge=0, alias="GENPOOL_MAX_LIMITER_WAIT_S")
    result_ttl_s: Count = Field(7 * 24 * 3600, ge=60, alias="GENPOOL_RESULT_TTL_S")
    spool_dir: Path = Field(Path(".genpool-spool"), alias="GENPOOL_SPOOL_DIR")
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field("text", alias="GENPOOL_LOG_FORMAT")
    log_level: Annotated[str, AfterValidator(str.upper)] = Field("INFO", alias="GENPOOL_LOG_LEVEL")
    heartbeat_s: float = Field(5.0, ge=0.5, alias="GENPOOL_HEARTBEAT_S")
    # a worker process writes its jobs' metrics counters this often, summed (0: with each job's record)
    metrics_flush_s: float = Field(1.0, ge=0, alias="GENPOOL_METRICS_FLUSH_S")
    redis_timeout_s: float = Field(5.0, ge=0.1, alias="GENPOOL_REDIS_TIMEOUT_S")
    s3_timeout_s: float = Field(10.0, ge=0.1, alias="GENPOOL_S3_TIMEOUT_S")
    metrics_port: Count = Field(9464, ge=1, alias="GENPOOL_METRICS_PORT")
    dashboard_port: Count = Field(9181, ge=1, alias="GENPOOL_DASHBOARD_PORT")  # rq-dashboard under `make up`
    workers: Count = Field(1, ge=1, alias="GENPOOL_WORKERS")  # `genpool worker` processes (its --workers)
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
    # A worker process exits after this many jobs (its in-flight jobs finish first) and `genpool worker`
    # starts a fresh one: a bound on what a long-lived process accumulates; 0 = never.
    worker_max_jobs: Count = Field(0, ge=0, alias="GENPOOL_WORKER_MAX_JOBS")
    # glibc malloc arenas per worker process (0 = glibc's default, 8 per core): job threads each get an
    # arena of their own otherwise, and the freed memory of many arenas is rarely returned (RELIABILITY.md).
    malloc_arena_max: Count = Field(2, ge=0, alias="GENPOOL_MALLOC_ARENA_MAX")
    env_file: Path | None = Field(None, alias=ENV_FILE_VARIABLE)  # the env file actually read, if any

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 dotenv_path: Path | None = DEFAULT_ENV_FILE) -> Settings:
        """``dotenv_path``: the default looks for ``GENPOOL_ENV_FILE``, then the nearest ``.env`` from the
        working directory up; another path reads that file; None reads no file."""
        process_env = os.environ if environ is None else environ
        env_file = find_env_file(process_env, dotenv_path)
        env = _merged_env(process_env, env_file)
        given = {name: value.strip() for name, value in env.items() if name in _ALIASES and value.strip()}
        if env_file is not None:
            given[ENV_FILE_VARIABLE] = str(env_file)
        try:
            settings = cls.model_validate(given)
        except pydantic.ValidationError as exc:
            raise ConfigError(describe(exc, given)) from None
        settings.check_credentials()
        return settings

    def check_credentials(self) -> None:
        if self.aws_access_key_id and not self.aws_secret_access_key:
            raise ConfigError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or neither "
                              "(boto3's own chain: AWS_PROFILE, an instance or container role)")
        if self.aws_secret_access_key and not self.aws_access_key_id:
            raise ConfigError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both, or neither")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redacted_url(value) if name == "redis_url" else value

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
    if kind == "http_url":
        return f"{name}={redacted_url(raw)!r} is not a URL: use http(s)://host:port, or leave it empty"
    if kind == "redis_url":
        return (f"REDIS_URL={redacted_url(raw)!r} is not a Redis URL: use redis://host:6379/0 "
                "(rediss:// for TLS, redis://user:password@host:6379/0 with a password, unix:///path.sock)")
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


def find_env_file(environ: Mapping[str, str], dotenv_path: Path | None = DEFAULT_ENV_FILE) -> Path | None:
    """The env file from_env reads: GENPOOL_ENV_FILE (it must exist), the nearest .env up from the working
    directory, or None."""
    if dotenv_path is None:
        return None
    if dotenv_path != DEFAULT_ENV_FILE:
        return dotenv_path if dotenv_path.is_file() else None
    explicit = environ.get(ENV_FILE_VARIABLE, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_FILE_VARIABLE}={explicit!r}: no such file")
        return path.resolve()
    here = Path.cwd()
    for directory in (here, *here.parents):
        candidate = directory / ".env"
        if candidate.is_file():
            return candidate
    return None


def _merged_env(environ: Mapping[str, str], env_file: Path | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if env_file is not None:
        from dotenv import dotenv_values

        try:
            values = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the env file {env_file}: {exc}") from None
        env.update({k: v for k, v in values.items() if v is not None})
    env.update(environ)
    return env
