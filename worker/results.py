"""Where a job's output and record go: the object store (with the spool behind it) and Redis."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
import tenacity

from genpool.shared import keys
from genpool.shared.errors import ConfigError, GenpoolError, StorageConfigError, StorageUnavailable
from genpool.shared.jobs import ResultRecord, StorageRef
from genpool.shared.metrics import MetricsBatch
from genpool.shared.notify import announce
from genpool.shared.storage import ObjectStore, StoredObject, content_type, object_key
from genpool.worker.answers import Generation
from genpool.worker.gemini import Turn
from genpool.worker.metricsflush import MetricsFlusher
from genpool.worker.policy import first_then_retry
from genpool.worker.ports import Later
from genpool.worker.spool import Spool

log = logging.getLogger("genpool.results")
CONVERSATION_TTL_S = 30 * 24 * 3600
SPEND_TTL_S = 2 * 24 * 3600  # an account's spend per UTC day is read on that day only
ROUTE_PIN_TTL_S = 2 * 24 * 3600  # longer than a job waits: a budget deferral lasts until midnight at most
RECHECK_STORAGE_S = 5.0  # while the bucket is misconfigured, look again at most this often (a probe object)


class ResultStore:
    def __init__(self, connection: redis.Redis, store: ObjectStore, spool: Spool, prefix: str,
                 result_ttl_s: int, upload_attempts: int = 3, upload_backoff_s: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep, metrics: MetricsFlusher | None = None) -> None:
        self._redis = connection
        self._metrics = metrics  # None: a job's metrics go in its record's pipeline
        self._pinned: set[str] = set()  # jobs in flight here that may have a route pin (ran before)
        self._store = store
        self._spool = spool
        self._prefix = prefix
        self._ttl_s = result_ttl_s
        self._clock = time.monotonic
        self._misconfigured: tuple[StorageConfigError, float] | None = None  # (the problem, when last seen)
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
        self._pinned.add(job_id)
        return (ResultRecord.model_validate_json(raw) if raw else None), (pinned or route.encode()).decode()

    def pin(self, job_id: str, route: str) -> None:
        """A job leaving to run later (deferred) keeps ``route`` for its next run (unless already pinned).
        Best effort: the deferral itself must not fail on it (it may be deferred for a Redis outage)."""
        self._pinned.discard(job_id)
        try:
            self._redis.set(keys.job_route(job_id), route, nx=True, ex=ROUTE_PIN_TTL_S)
        except redis.RedisError as exc:
            log.warning("job %s: route not pinned (%s); its next run takes the routing in force", job_id, exc)

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
        """Upload, or keep the paid answer in the spool. S3 down: the job goes on (its record points at the
        key the drainer will fill). S3 refusing genpool (no bucket, bad credentials): kept too, and the job
        fails with a configuration record (StorageConfigError); jobs after it fail before their call."""
        upload: tenacity.Retrying | None = None

        def retry_loop() -> tenacity.Retrying:  # one per call: job threads upload concurrently
            nonlocal upload
            upload = self._upload.copy()
            return upload

        try:
            first_then_retry(retry_loop, self._store.put, obj)
            self._misconfigured = None
            return
        except StorageUnavailable as exc:
            attempts = upload.statistics.get("attempt_number", 0) if upload is not None else 1
            log.warning("upload of %s failed %d times (%s)", obj.key, attempts, exc)
        except StorageConfigError as exc:
            self._misconfigured = (exc, self._clock())
            self._keep(obj)
            raise StorageConfigError(f"{exc}; the answer is kept in the worker's spool and uploaded to "
                                     f"{obj.key} once S3 takes it") from None
        self._keep(obj)
        log.warning("S3 unavailable: %s kept in the local spool until it can be uploaded", obj.key)

    def _keep(self, obj: StoredObject) -> None:
        self._spool.save(obj)
        self._redis.sadd(keys.spool_index(), obj.key)

    def check_storage(self) -> None:
        """Before a paid call: raise StorageConfigError while the bucket refuses genpool (found by an upload
        or by a probe object at most every RECHECK_STORAGE_S); a probe that goes through clears it."""
        if self._misconfigured is None:
            return
        problem, seen_at = self._misconfigured
        if self._clock() - seen_at < RECHECK_STORAGE_S:
            raise problem
        probe = getattr(self._store, "probe", None)
        try:
            if probe is not None:
                probe(self._prefix)
        except ConfigError as exc:
            self._misconfigured = (StorageConfigError(str(exc)), self._clock())
            raise self._misconfigured[0] from None
        except GenpoolError:
            self._misconfigured = (problem, self._clock())  # S3 down now: still not known to be fixed
            raise problem from None
        self._misconfigured = None
        log.warning("S3 takes genpool's objects again (bucket %s)", self._store.bucket)

    def drain_spool(self) -> int:
        """Upload what the spool holds; each uploaded key leaves the spool index. Returns how many."""
        return self._spool.drain(self._store, on_uploaded=self._unindex)

    def _unindex(self, key: str) -> None:
        self._misconfigured = None  # S3 took an object: whatever refused genpool is fixed
        self._redis.srem(keys.spool_index(), key)
        self._settle(key)

    def _settle(self, key: str) -> None:
        """A job that failed only because S3 refused its paid answer: now that the answer is stored, its
        record says finished (and where), so `genpool result --out` finds it."""
        record = self.get(key.rsplit("/", 1)[-1].split(".", 1)[0])
        if record is None or record.status != "failed" or record.model_used is None or (
                record.error is None or record.error.type != ConfigError.kind):
            return
        stored = record.model_copy(update={"status": "finished", "error": None,
                                           "storage": StorageRef(bucket=self._store.bucket, key=key)})
        self._redis.set(keys.result(record.id), stored.model_dump_json(), keepttl=True)
        log.info("job %s: its kept answer is stored now (%s); record finished", record.id, key)

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
             state: bytes | None = None, notify: str | None = None, later: Later | None = None) -> None:
        """One round trip. A conversation's turns (and structured state) are written before the record:
        once the record exists, the next message (its sender waits for it, shared/turns.py) reads the whole
        history. ``notify``: the producer waiting for the record (the envelope's), told in the same trip.
        ``later``: the writes go on the job's own end instead (RQ's end MULTI: no round trip of their own)."""
        def write(pipe: Any) -> None:
            self._write(pipe, record, metrics, new_turns, state, notify)

        flusher = self._metrics
        after = (lambda: flusher.add(metrics)) if flusher is not None else None
        if later is not None:
            later(write, after)
            return
        pipe = self._redis.pipeline(transaction=False)
        write(pipe)
        pipe.execute()
        if after is not None:
            after()

    def _write(self, pipe: Any, record: ResultRecord, metrics: MetricsBatch, new_turns: list[Turn] | None,
               state: bytes | None, notify: str | None) -> None:
        if record.id in self._pinned:  # only a job that ran before can have a pin (begin, pin)
            self._pinned.discard(record.id)
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
        if notify is not None:
            announce(pipe, notify, record.id)
        if self._metrics is None:
            metrics.write(pipe)


def _log_failed_upload(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    key = getattr(state.args[0], "key", "?") if state.args else "?"
    log.warning("upload of %s failed (attempt %d): %s", key, state.attempt_number, exc)
