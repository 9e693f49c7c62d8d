"""The response cache: an identical request is served from a stored answer, without a paid call.

Opt-in per job (``cache: true``) or by GENPOOL_CACHE (``on``, or ``temperature0``: jobs with temperature 0).
The key is a digest of everything that decides the answer: the request minus what only steers how it is
run (its own model, fallback switch, cache and budget policy), the conversation history it is sent with,
and the chain it runs on (so a cached answer never crosses models, settings or A/B arms).

Single flight: the first job for a digest takes a lease and makes the call; identical jobs arriving
meanwhile wait and are served from its answer. A leader that fails, defers or dies gives the lease up
(or lets it run out): the next waiting job leads, so none is stranded. A served job points at the
leader's stored object; its record says ``cache_hit`` with cost 0, and the limiter is not charged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import redis

from genpool.shared import keys, luascript
from genpool.shared.errors import Deferred, ServiceUnavailable
from genpool.shared.jobs import ChatRequest, Request, ResultRecord

log = logging.getLogger("genpool.cache")

#: Request fields that steer how a job runs, not what it answers (the chain in the key covers the model).
NOT_IN_KEY = frozenset(("model", "allow_fallback", "cache", "on_budget", "conversation_id"))
FIRST_LOOK_S, MAX_LOOK_S = 0.025, 0.25  # a waiting job looks again after this, growing by half each time
_JOIN = luascript.read("genpool.worker", "lua/cache_join.lua")
_RELEASE = luascript.read("genpool.worker", "lua/cache_release.lua")


def wanted(request: Request, default: str) -> bool:
    """Whether a job uses the cache: its own ``cache`` field, else GENPOOL_CACHE (off / on / temperature0)."""
    if request.cache is not None:
        return request.cache
    return default == "on" or (default == "temperature0" and request.generation.temperature == 0)


def cache_key(request: Request, chain: Sequence[str], history: Sequence[tuple[str, str]]) -> str:
    fields = {k: v for k, v in request.model_dump(mode="json").items() if k not in NOT_IN_KEY}
    body = json.dumps({"request": fields, "history": [list(t) for t in history], "chain": list(chain)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the job that paid for it, its object, and what its record said."""

    job_id: str
    model: str
    bucket: str
    key: str
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    model_version: str | None
    cost_usd: float
    text: str = ""  # chat only: the model's turn, appended to a served conversation

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> CachedAnswer:
        return cls(**json.loads(raw))

    @classmethod
    def of(cls, record: ResultRecord, request: Request, text: str) -> CachedAnswer | None:
        """The answer a finished record can serve (None without a stored object)."""
        if record.storage is None or record.model_used is None:
            return None
        return cls(record.id, record.model_used, record.storage.bucket, record.storage.key, record.finish_reason,
                   record.prompt_tokens, record.output_tokens, record.model_version, record.cost_usd,
                   text if isinstance(request, ChatRequest) else "")


@dataclass(frozen=True)
class Lead:
    """This job makes the paid call for ``digest`` (it holds the lease under ``token``)."""

    digest: str
    token: str


class ResponseCache:
    def __init__(self, connection: redis.Redis, ttl_s: int, default: str, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        self._redis = connection
        self.ttl_s = ttl_s
        self.default = default
        self._clock = clock
        self._sleep = sleep
        self._join = connection.register_script(_JOIN)
        self._release = connection.register_script(_RELEASE)

    def wanted(self, request: Request) -> bool:
        return wanted(request, self.default)

    def join(self, digest: str, lease_s: float, deadline_at: float) -> CachedAnswer | Lead:
        """The stored answer, or the lead; while an identical job leads, wait (until this job's deadline:
        then it goes back on the queue)."""
        token, pause_s = uuid.uuid4().hex, FIRST_LOOK_S
        while True:
            state, value = self._call(self._join, digest, token, max(1, int(lease_s * 1000)))
            if state == b"hit":
                return CachedAnswer.from_json(value)
            if state == b"lead":
                return Lead(digest, token)
            if self._clock() + pause_s >= deadline_at:
                raise Deferred("an identical request's answer did not come before the job's deadline", delay_s=1.0)
            self._sleep(pause_s)
            pause_s = min(MAX_LOOK_S, pause_s * 1.5)

    def publish(self, lead: Lead, answer: CachedAnswer) -> None:
        """Store the leader's answer and give the lease up (best effort: the job itself is done)."""
        self._done(lead, answer.to_json(), self.ttl_s)

    def abandon(self, lead: Lead) -> None:
        """The leader failed or deferred: the next waiting job leads."""
        self._done(lead)

    def _done(self, lead: Lead, *answer: str | int) -> None:
        try:
            self._call(self._release, lead.digest, lead.token, *answer)
        except ServiceUnavailable as exc:
            log.warning("response cache: could not release %s (%s); its lease runs out", lead.digest[:12], exc)

    def _call(self, script: object, digest: str, *args: str | int) -> list[bytes]:
        try:
            return script(keys=[keys.cache_entry(digest), keys.cache_lead(digest)], args=args)  # type: ignore[operator,no-any-return]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceUnavailable(f"response cache: {exc}") from exc

