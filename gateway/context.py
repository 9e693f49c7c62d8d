"""The gateway's per-process parts (producer, async Redis, stream hub, limits, turns, S3) and what every
route needs of them: who is calling, whose a job is, a job's record, and a job's events as they come."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis
from starlette.concurrency import run_in_threadpool

from genpool.gateway import tokens
from genpool.gateway.errors import NotFound, Unauthorized
from genpool.gateway.hub import StreamHub
from genpool.gateway.limits import Limits
from genpool.gateway.settings import ApiSettings
from genpool.gateway.turns import Turns
from genpool.producer.client import GenPool, JobHandle
from genpool.shared import keys
from genpool.shared.errors import ServiceUnavailable
from genpool.shared.events import JobEvent
from genpool.shared.jobs import Request, ResultRecord
from genpool.shared.settings import Settings
from genpool.shared.storage import S3Store

IDLE_S = 15.0  # a follower with no event this long checks the record (the stream may have expired)


def async_redis(settings: Settings, single: bool = False, pool_size: int = 64) -> aredis.Redis:
    """A client whose commands wait for a free connection (up to the Redis timeout) when all ``pool_size``
    are busy, instead of failing: a burst of a thousand sockets shares a few dozen connections."""
    timeout_s = max(settings.redis_timeout_s, 5.0)
    if single:
        return aredis.Redis.from_url(settings.redis_url, socket_timeout=timeout_s, health_check_interval=30,
                                     socket_connect_timeout=settings.redis_timeout_s, single_connection_client=True)
    pool = aredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=pool_size, timeout=timeout_s,
                                                  socket_timeout=timeout_s, health_check_interval=30,
                                                  socket_connect_timeout=settings.redis_timeout_s)
    return aredis.Redis.from_pool(pool)  # owns the pool: aclose() disconnects it


def internal_conversation(account: str, conversation_id: str) -> str:
    """Conversations are per token: the worker's id is ``<account>:<id>`` (':' is never in an account)."""
    return f"{account}:{conversation_id}"


def terminal_event(record: ResultRecord) -> JobEvent:
    """The last event, rebuilt from the record (for a job whose stream expired or never existed)."""
    if record.status == "finished":
        data: dict[str, Any] = {"model_used": record.model_used, "finish_reason": record.finish_reason,
                                "prompt_tokens": record.prompt_tokens, "output_tokens": record.output_tokens,
                                "cost_usd": record.cost_usd}
    else:
        data = {"error": record.error.model_dump() if record.error else {"type": "failed", "message": "failed"}}
    return JobEvent(id=f"{int(record.finished_at * 1000)}-0", type=record.status, data=data)


@dataclass
class Gateway:
    settings: Settings
    api: ApiSettings
    pool: GenPool
    redis: aredis.Redis
    hub: StreamHub
    limits: Limits
    turns: Turns
    _store: S3Store | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, api: ApiSettings) -> Gateway:
        conn = async_redis(settings)
        return cls(settings=settings, api=api, pool=GenPool.from_env(settings), redis=conn,
                   hub=StreamHub(lambda: async_redis(settings, single=True)), limits=Limits(conn),
                   turns=Turns(conn, ttl_s=2 * settings.job_deadline_s + 60))

    async def start(self) -> None:
        await self.hub.start()

    async def close(self) -> None:
        await self.hub.stop()
        await self.redis.aclose()
        self.pool.connection.close()

    def store(self) -> S3Store:
        if self._store is None:
            self._store = S3Store.from_settings(self.settings)
        return self._store

    async def caller(self, authorization: str | None) -> tokens.TokenInfo:
        """The token behind ``Authorization: Bearer <token>``; Unauthorized otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>' (make one with: genpool tokens create NAME)")
        info: tokens.TokenInfo | None = await self.redis_call(tokens.lookup(self.redis, token.strip()))
        if info is None:
            raise Unauthorized("unknown or revoked token")
        return info

    async def redis_call(self, awaitable: Any) -> Any:
        """An async Redis command; an outage becomes genpool's ServiceUnavailable (then a 503)."""
        try:
            return await awaitable
        except (aredis.ConnectionError, aredis.TimeoutError, OSError) as exc:
            raise ServiceUnavailable(f"cannot reach Redis ({exc})") from exc

    async def submit(self, requests: Sequence[Request], account: str, priority: str,
                     idempotency_keys: Sequence[str | None],
                     turn_holders: Mapping[str, str] | None = None) -> list[JobHandle]:
        """Through the producer API, like any Python service (it is synchronous: run it on a thread).
        ``turn_holders``: conversation turns the gateway already holds (conversations.start_turn)."""
        def submit() -> list[JobHandle]:
            return self.pool.submit_many(requests, priority=priority, idempotency_keys=idempotency_keys,
                                         events=True, account=account, turn_holders=turn_holders)

        handles = await run_in_threadpool(submit)
        pipe = self.redis.pipeline(transaction=False)
        for handle in handles:  # before the client knows the ids: nobody can ask for them sooner
            pipe.set(keys.api_job_owner(handle.id), account, ex=self.settings.result_ttl_s)
        await self.redis_call(pipe.execute())
        return handles

    async def record(self, job_id: str) -> ResultRecord | None:
        raw = await self.redis_call(self.redis.get(keys.result(job_id)))
        return ResultRecord.model_validate_json(raw) if raw else None

    async def owned_record(self, job_id: str, account: str) -> ResultRecord | None:
        """The job's record if it has one; NotFound unless the job is the caller's."""
        record = await self.record(job_id)
        if record is not None:
            owner = record.account
        else:
            raw = await self.redis_call(self.redis.get(keys.api_job_owner(job_id)))
            owner = raw.decode() if raw else None
        if owner != account:
            raise NotFound(f"no job {job_id} for this token")
        return record

    async def status(self, job_id: str) -> str:
        def status() -> str:
            return self.pool.handle(job_id).status()

        return await run_in_threadpool(status)

    async def follow(self, job_id: str, after: str = "0-0",
                     idle_s: float = IDLE_S) -> AsyncGenerator[JobEvent | None, None]:
        """The job's events from ``after`` until its terminal one; None after each ``idle_s`` of silence
        (a heartbeat for SSE). A job whose stream is gone ends with an event rebuilt from its record."""
        if not await self.redis_call(self.redis.exists(keys.job_events(job_id))):
            record = await self.record(job_id)
            if record is not None:  # long over: its stream expired (or it never had one)
                yield terminal_event(record)
                return
        sub = await self.hub.subscribe(job_id, after)
        try:
            while True:
                event = await sub.next(idle_s)
                if event is None:
                    record = await self.record(job_id)
                    if record is not None:
                        yield terminal_event(record)
                        return
                yield event
                if event is not None and event.terminal:
                    return
        finally:
            sub.close()
