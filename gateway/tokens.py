"""Bearer tokens: made once, shown once, stored only as their SHA-256 (keys.api_tokens).

A token is ``gpk_`` + 43 URL-safe characters (256 random bits), so a fast hash is enough: nobody can
guess one from its digest, and a lookup is one HGET. Each token has a name (the jobs' ``account``) and
its own limits. ``genpool tokens create NAME`` prints the token; Redis never holds it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, ConfigDict, Field

from genpool.shared import keys
from genpool.shared.errors import ValidationError
from genpool.shared.jobs import ACCOUNT_PATTERN

TOKEN_PREFIX = "gpk_"
_TOKEN_SHAPE = re.compile(r"^gpk_[A-Za-z0-9_-]{43}$")


class TokenInfo(BaseModel):
    """What Redis keeps of a token: never the token itself."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=ACCOUNT_PATTERN)
    rpm: int = Field(ge=1)
    usd_per_day: float = Field(ge=0)
    created_at: float


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return bool(_TOKEN_SHAPE.match(token))


class TokenStore:
    """Create, list and revoke tokens (the ``genpool tokens`` command; synchronous Redis)."""

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection

    def create(self, name: str, rpm: int, usd_per_day: float) -> str:
        """A new token for ``name``; raises ValidationError for a bad or taken name."""
        if not re.match(ACCOUNT_PATTERN, name):
            raise ValidationError(f"name: {name!r} must be 1-32 of a-z 0-9 _ . - (starting with a letter or digit)")
        if rpm < 1 or usd_per_day < 0:
            raise ValidationError("limits: rpm must be at least 1 and usd_per_day at least 0")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(name=name, rpm=rpm, usd_per_day=usd_per_day, created_at=round(time.time(), 3))
        if not self._redis.hsetnx(keys.api_token_names(), name, digest(token)):
            raise ValidationError(f"name: a token named {name!r} exists; revoke it first")
        self._redis.hset(keys.api_tokens(), digest(token), info.model_dump_json())
        return token

    def list(self) -> list[TokenInfo]:
        raw = self._redis.hvals(keys.api_tokens())
        return sorted((TokenInfo.model_validate_json(r) for r in raw), key=lambda t: t.name)

    def revoke(self, name: str) -> bool:
        found = self._redis.hget(keys.api_token_names(), name)
        if found is None:
            return False
        pipe = self._redis.pipeline()
        pipe.hdel(keys.api_tokens(), found)
        pipe.hdel(keys.api_token_names(), name)
        pipe.execute()
        return True


async def lookup(connection: aredis.Redis, token: str) -> TokenInfo | None:
    """The token's record, or None for a malformed, unknown or revoked token (one HGET)."""
    if not well_formed(token):
        return None
    raw = await connection.hget(keys.api_tokens(), digest(token))
    return TokenInfo.model_validate_json(raw) if raw else None
