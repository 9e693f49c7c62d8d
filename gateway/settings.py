"""The gateway's own settings: read once from the environment (and .env) into a frozen, validated object.

genpool's common settings (Redis, S3, deadlines) stay in genpool.shared.settings.Settings; these are the
``GENPOOL_API_*`` variables only the gateway reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from genpool.shared.errors import ConfigError

PREFIX = "GENPOOL_API_"


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(1_048_576, ge=1_024)  # larger request bodies get 413
    max_message_bytes: int = Field(65_536, ge=256)  # one WebSocket message from a client
    max_batch: int = Field(100, ge=1, le=10_000)  # requests in one POST /v1/jobs
    wait_s: float = Field(30.0, ge=0, le=600)  # POST .../messages waits this long for the answer, then 202
    turn_wait_s: float = Field(60.0, ge=0, le=3_600)  # a message waits this long for the turn before it (409)
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    rpm: int = Field(600, ge=1)  # default requests per minute of a new token
    usd_per_day: float = Field(10.0, ge=0)  # default USD per UTC day of a new token
    presign_s: int = Field(300, ge=1, le=604_800)  # lifetime of a presigned output URL
    max_pending: int = Field(8, ge=1, le=1_000)  # messages one WebSocket may queue behind its turn

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(o.strip() for o in value.split(",") if o.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = Path(".env")) -> ApiSettings:
        """``GENPOOL_API_<FIELD>`` for each field; a bad value is one ConfigError line naming the variable."""
        import os

        env: dict[str, str] = {}
        if dotenv_path is not None and dotenv_path.is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        values = {name: env[PREFIX + name.upper()].strip() for name in cls.model_fields
                  if env.get(PREFIX + name.upper(), "").strip()}
        try:
            return cls.model_validate(values)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            name = PREFIX + str(err["loc"][0]).upper()
            raise ConfigError(f"{name}={values.get(str(err['loc'][0]))!r}: {err['msg']}") from None
