"""Where a job's output and record go: the object store (with the spool behind it) and Redis."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import redis
import tenacity

from genpool.shared import keys
from genpool.shared.errors import GenpoolError, StorageUnavailable
from genpool.shared.jobs import ResultRecord, StorageRef
from genpool.shared.metrics import MetricsBatch
from genpool.shared.storage import ObjectStore, StoredObject, content_type, object_key
from genpool.worker.answers import Generation
from genpool.worker.gemini import Turn
from genpool.worker.spool import Spool

log = logging.getLogger("genpool.results")
CONVERSATION_TTL_S = 30 * 24 * 3600
SPEND_TTL_S = 2 * 24 * 3600  # an account's spend per UTC day is read on that day only
ROUTE_PIN_TTL_S = 2 * 24 * 3600  # longer than a job waits: a budget deferral lasts until midnight at most


class ResultStore:
    def __init__(self, connection: redis.Redis, store: ObjectStore, spool: Spool, prefix: str,
                 result_ttl_s: int, upload_attempts: int = 3, upload_backoff_s: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._redis = connection
        self._store = store
        self._spool = spool
        self._prefix = prefix
        self._ttl_s = result_ttl_s
        self._upload = tenacity.Retrying(  # S3's own client does not retry (shared/storage.py)
            stop=tenacity.stop_after_attempt(upload_attempts),
            wait=tenacity.wait_exponential(multiplier=upload_backoff_s, min=upload_backoff_s),
            retry=tenacity.retry_if_exception_type(StorageUnavailable), before_sleep=_log_failed_upload,
            sleep=sleep, reraise=True)

    def get(self, job_id: str) -> ResultRecord | None:
        raw = self._redis.get(keys.result(job_id))
        return ResultRecord.model_validate_json(raw) if raw else None

    def begin(self, job_id: str, route: str) -> tuple[ResultRecord | None, str]:
        """The job's record if it has one, and its route: ``route``, or the one its first run pinned (one
        round trip, as ``get`` alone was): a re-run or a deferred job keeps the chain it started with."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(keys.result(job_id))
        pipe.set(keys.job_route(job_id), route, nx=True, ex=ROUTE_PIN_TTL_S)
        pipe.get(keys.job_route(job_id))
        raw, _, pinned = pipe.execute()
        return (ResultRecord.model_validate_json(raw) if raw else None), (pinned or route.encode()).decode()

    def history(self, conversation_id: str) -> list[Turn]:
        turns = self._redis.lrange(keys.conversation(conversation_id), 0, -1)
        return [(str(role), str(text)) for role, text in (json.loads(t) for t in turns)]

    def store_output(self, job_id: str, kind: str, model: str, gen: Generation) -> StorageRef:
        key = object_key(self._prefix, kind, job_id)
        obj = StoredObject(
            key=key, body=gen.body, content_type=content_type(kind), tags={"model": model, "kind": kind},
            metadata={"job-id": job_id, "model": model, "model-version": gen.model_version,
                      "finish-reason": gen.finish_reason, "prompt-tokens": str(gen.prompt_tokens),
                      "output-tokens": str(gen.output_tokens), "images": str(gen.images)},
        )
        self._put_or_spool(obj)
        return StorageRef(bucket=self._store.bucket, key=key)

    def _put_or_spool(self, obj: StoredObject) -> None:
        upload = self._upload.copy()  # one per call: job threads upload concurrently
        try:
            upload(self._store.put, obj)
            return
        except StorageUnavailable as exc:
            log.warning("upload of %s failed %d times (%s)", obj.key, upload.statistics.get("attempt_number", 0), exc)
        self._spool.save(obj)
        self._redis.sadd(keys.spool_index(), obj.key)
        log.warning("S3 unavailable: %s kept in the local spool until it can be uploaded", obj.key)

    def drain_spool(self) -> int:
        """Upload what the spool holds; each uploaded key leaves the spool index. Returns how many."""
        return self._spool.drain(self._store, on_uploaded=self._unindex)

    def _unindex(self, key: str) -> None:
        self._redis.srem(keys.spool_index(), key)

    def find_output(self, job_id: str, kind: str) -> dict[str, str] | None:
        """Metadata of this job's stored object, if it exists (used only when a job is run again)."""
        key = object_key(self._prefix, kind, job_id)
        head = getattr(self._store, "head", None)
        try:
            meta = head(key) if head else None
        except GenpoolError:
            return None
        return {**meta, "bucket": self._store.bucket, "key": key} if meta is not None else None

    def save(self, record: ResultRecord, metrics: MetricsBatch, new_turns: list[Turn] | None = None,
             state: bytes | None = None) -> None:
        """One round trip. A conversation's turns (and structured state) are written before the record:
        once the record exists, the next turn (which waits for it) reads the whole history."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.job_route(record.id))
        if new_turns and record.conversation_id:
            conv = keys.conversation(record.conversation_id)
            pipe.rpush(conv, *[json.dumps(list(t)) for t in new_turns])
            pipe.expire(conv, CONVERSATION_TTL_S)
            if state is not None:
                pipe.set(keys.conversation_state(record.conversation_id), state, ex=CONVERSATION_TTL_S)
        if record.account and record.cost_usd:
            spend = keys.account_spend(record.account, time.strftime("%Y%m%d", time.gmtime(record.finished_at)))
            pipe.incrbyfloat(spend, record.cost_usd)
            pipe.expire(spend, SPEND_TTL_S)
        pipe.set(keys.result(record.id), record.model_dump_json(), ex=self._ttl_s)
        metrics.write(pipe)
        pipe.execute()


def _log_failed_upload(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    key = getattr(state.args[0], "key", "?") if state.args else "?"
    log.warning("upload of %s failed (attempt %d): %s", key, state.attempt_number, exc)
