"""GenPool: submit one job, submit many in one round trip, and follow them through handles."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import pydantic
import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, Retry
from rq.serializers import JSONSerializer

from genpool.producer.waiting import POLL_ALL_S, Progress, read_records, wait_announced
from genpool.shared import contract, keys
from genpool.shared.catalog import Catalog, load_catalog
from genpool.shared.errors import IdempotencyConflict, NoSuchJob, ServiceUnavailable, ValidationError
from genpool.shared.events import publish as publish_event
from genpool.shared.jobs import (
    ACCOUNT_PATTERN,
    ChatRequest,
    Envelope,
    Request,
    ResultRecord,
    new_job_id,
    parse_request,
)
from genpool.shared.notify import Announcements
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings
from genpool.shared.turns import Turns

IDEMPOTENCY_TTL_S = 7 * 24 * 3600
MAX_DEADLINE_S = 86_400
TURN_WAIT_S = 60.0  # how long a conversation's message waits for the message before it to be answered


class _Extras(NamedTuple):
    """What a submit call sets for all of its jobs besides the requests."""

    deadline_s: float | None
    events: bool
    account: str | None
    notify: str | None  # the producer's waiter id (shared/notify.py), when the jobs announce their records


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """One readable line per problem: ``field.path: message``."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("tagged-union", "function-after")))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where or 'request'}: {msg}")
    return "; ".join(lines)


class JobHandle:
    """A submitted job: its id, status and result."""

    def __init__(self, job_id: str, connection: redis.Redis, *, existing: bool = False,
                 notify: Announcements | None = None) -> None:
        self.id = job_id
        self._redis = connection
        self.existing = existing  # True when an idempotency key returned an earlier job
        self.notify = notify  # where its record is announced (submitted with notify), else None

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def result(self) -> ResultRecord | None:
        """The result record once the job is terminal (finished or failed), else None."""
        raw = _call(self._redis.get, keys.result(self.id))
        return ResultRecord.model_validate_json(raw) if raw else None

    def status(self) -> str:
        """queued | started | scheduled | deferred | finished | failed | unknown."""
        record = self.result()
        if record is not None:
            return record.status
        try:
            job = Job.fetch(self.id, connection=self._redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return "unknown"
        status = job.get_status(refresh=False)
        return str(status.value if status is not None else "unknown")

    def wait(self, timeout_s: float = 300.0, poll_s: float = 0.05) -> ResultRecord:
        """Block until the job is terminal (finished or failed: the record says which); raises NoSuchJob
        for an id genpool does not know, TimeoutError after ``timeout_s``. A job submitted with ``notify``
        is woken by its announcement (one blocking read), others poll every ``poll_s`` growing to 0.5 s."""
        deadline = time.monotonic() + timeout_s
        record = self.result()
        if record is None and self.status() == "unknown" and self.result() is None:
            raise NoSuchJob(f"no such job: {self.id} (never submitted, or its record expired)")
        results = [record]
        if record is None and self.notify is not None:
            _call(wait_announced, self.notify, [self.id], results, deadline)
        while results[0] is None and time.monotonic() < deadline:
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.5)
            results[0] = self.result()
        if results[0] is None:
            raise TimeoutError(f"job {self.id} not finished after {timeout_s} s (status: {self.status()})")
        return results[0]


class GenPool:
    """The producer API. Holds one Redis connection pool; safe to share across threads."""

    def __init__(self, connection: redis.Redis, settings: Settings | None = None,
                 catalog: Catalog | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.catalog = catalog or load_catalog(self.settings)
        self._redis = connection
        self._queues = {p: Queue(keys.queue_name(p), connection=connection, serializer=JSONSerializer)
                        for p in keys.PRIORITIES}
        # This producer's stream of announced records (jobs submitted with notify); a blocking read on it
        # stays under the connection's socket timeout.
        self._notify = Announcements(connection, new_job_id(), min(POLL_ALL_S, 0.8 * self.settings.redis_timeout_s))

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> GenPool:
        settings = settings or Settings.from_env()
        return cls(connect(settings), settings)

    @property
    def connection(self) -> redis.Redis:
        return self._redis

    def validate(self, request: Request | Mapping[str, Any]) -> Request:
        """Parse and check a request; raises genpool's ValidationError with a readable message."""
        try:
            parsed = parse_request(request)
        except pydantic.ValidationError as exc:
            raise ValidationError(describe_validation_error(exc)) from None
        self._check_models(parsed)
        return parsed

    def _check_models(self, request: Request) -> None:
        if request.model is not None and request.model not in self.catalog.models:
            known = ", ".join(sorted(self.catalog.models))
            raise ValidationError(f"model: {request.model!r} is not in the catalog (known: {known})")
        if request.model is not None:
            produces = self.catalog.models[request.model].kind
            wanted = contract.output_of(request.kind)
            if produces != wanted:
                raise ValidationError(f"model: {request.model!r} makes {produces}, not {wanted} ({request.kind} job)")
        chain = self.catalog.chain_for(request.kind, request.model, request.allow_fallback)
        largest = max(self.catalog.spec(m).input_token_limit for m in chain)
        tokens = contract.estimate_tokens(request.prompt_chars())
        if tokens > largest:
            raise ValidationError(f"prompt: about {tokens} tokens, above the largest input limit in the chain "
                                  f"({largest} tokens)")

    def submit(self, request: Request | Mapping[str, Any], *, priority: str = "default",
               idempotency_key: str | None = None, deadline_s: float | None = None, events: bool = False,
               account: str | None = None, turn_wait_s: float = TURN_WAIT_S, notify: bool = False) -> JobHandle:
        """One job. A chat message on a ``conversation_id`` waits (up to ``turn_wait_s``, then
        ConversationBusy) until the conversation's previous message is answered: turns never interleave."""
        return self.submit_many([request], priority=priority, deadline_s=deadline_s,
                                idempotency_keys=[idempotency_key], events=events, account=account,
                                turn_wait_s=turn_wait_s, notify=notify)[0]

    def submit_many(self, requests: Sequence[Request | Mapping[str, Any]], *, priority: str = "default",
                    idempotency_keys: Sequence[str | None] | None = None, deadline_s: float | None = None,
                    events: bool = False, account: str | None = None, turn_wait_s: float = TURN_WAIT_S,
                    turn_holders: Mapping[str, str] | None = None, notify: bool = False) -> list[JobHandle]:
        """Validate every request first (all or nothing, an error names the item), then enqueue in one
        pipelined round trip. At most one message per conversation in one call.

        ``events``: the job publishes its progress to a Redis stream (genpool.shared.events), which the
        gateway relays; a request with ``stream: true`` always does. ``account``: who submits (a gateway
        token's name); the day's spend of its finished jobs is counted under it. ``turn_holders``: turns the
        caller already holds (conversation id -> holder value from genpool.shared.turns; the gateway waits for
        a turn itself): used as they are, then handed to the jobs. ``notify``: the worker announces each
        job's record to this GenPool, so ``wait_all`` and ``JobHandle.wait`` block on one read instead of
        polling every record (shared/notify.py); needs workers of this release or later (upgrade workers
        first)."""
        queue = self._queue(priority)
        if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
            raise ValidationError(f"deadline_s: must be above 0 and at most {MAX_DEADLINE_S} s (got {deadline_s})")
        if account is not None and not re.match(ACCOUNT_PATTERN, account):
            raise ValidationError(f"account: {account!r} must match {ACCOUNT_PATTERN}")
        parsed = self._validate_all(requests)
        idem = list(idempotency_keys or [None] * len(parsed))
        if len(idem) != len(parsed):
            raise ValidationError("idempotency_keys must have one entry per request")
        conversations = _conversations(parsed)
        extras = _Extras(deadline_s, events, account, self._notify.waiter if notify else None)
        if not conversations:
            return self._claim_and_enqueue(queue, priority, parsed, idem, extras)
        turns = Turns(self._redis)
        given = dict(turn_holders or {})
        held = {conv: given.get(conv) or _call(turns.acquire, conv, turn_wait_s)
                for conv in sorted(set(conversations.values()))}
        try:
            handles = self._claim_and_enqueue(queue, priority, parsed, idem, extras)
        except BaseException:
            for conv, mine in held.items():
                if conv not in given:  # the caller gives back the turns it brought
                    with contextlib.suppress(redis.RedisError):
                        turns.release(conv, mine)
            raise
        for i, conv in conversations.items():
            if handles[i].existing:  # a retried message: its first job holds (or held) the turn
                _call(turns.release, conv, held[conv])
            else:
                _call(turns.attach, conv, held[conv], handles[i].id)
        return handles

    def _validate_all(self, requests: Sequence[Request | Mapping[str, Any]]) -> list[Request]:
        parsed = []
        for index, request in enumerate(requests):
            try:
                parsed.append(self.validate(request))
            except ValidationError as exc:
                if len(requests) == 1:
                    raise
                raise ValidationError(f"request {index} (0-based): {exc}") from None
        return parsed

    def _claim_and_enqueue(self, queue: Queue, priority: str, parsed: list[Request], idem: list[str | None],
                           extras: _Extras) -> list[JobHandle]:
        ids = [new_job_id() for _ in parsed]
        claimed = self._claim_idempotency(ids, idem, [_fingerprint(r) for r in parsed])
        fresh = [i for i, owner in enumerate(claimed) if owner == ids[i]]
        envelopes = [self._envelope(ids[i], parsed[i], extras) for i in fresh]
        try:
            self._enqueue(queue, envelopes, priority)
        except ServiceUnavailable:
            self._release_claims([idem[i] for i in fresh if idem[i]])
            raise
        notify = self._notify if extras.notify else None  # an earlier job (idempotency key) announces nothing here
        return [JobHandle(claimed[i], self._redis, existing=claimed[i] != ids[i],
                          notify=notify if claimed[i] == ids[i] else None) for i in range(len(parsed))]

    def handle(self, job_id: str) -> JobHandle:
        return JobHandle(job_id, self._redis)

    def wait_all(self, handles: Iterable[JobHandle], timeout_s: float = 600.0,
                 on_progress: Progress | None = None) -> list[ResultRecord | None]:
        """Wait for many jobs; None for any not done by the deadline. Jobs submitted with ``notify`` by this
        GenPool: one blocking read wakes the wait for the records announced (shared/notify.py); others:
        one MGET of every pending record per poll. ``on_progress(done)``: called as records arrive."""
        handles = list(handles)
        results: list[ResultRecord | None] = [None] * len(handles)
        deadline = time.monotonic() + timeout_s
        streams = {h.notify.key: h.notify for h in handles if h.notify is not None}
        if len(streams) == 1 and all(h.notify is not None for h in handles):  # else polled, as below
            _call(wait_announced, next(iter(streams.values())), [h.id for h in handles], results, deadline,
                  on_progress)
            return results
        while True:
            done = self.poll_results(handles, results)
            if on_progress is not None:
                on_progress(done)
            if done == len(handles) or time.monotonic() >= deadline:
                return results
            time.sleep(0.2)

    def poll_results(self, handles: Sequence[JobHandle], results: list[ResultRecord | None]) -> int:
        """Fill ``results`` in place for handles that have finished; returns how many are done."""
        pending = [i for i, r in enumerate(results) if r is None]
        _call(read_records, self._redis, [h.id for h in handles], results, pending)
        return sum(r is not None for r in results)

    def _queue(self, priority: str) -> Queue:
        try:
            return self._queues[priority]
        except KeyError:
            raise ValidationError(f"priority: {priority!r} is not one of {', '.join(keys.PRIORITIES)}") from None

    def _envelope(self, job_id: str, request: Request, extras: _Extras) -> Envelope:
        deadline = self.settings.job_deadline_s if extras.deadline_s is None else extras.deadline_s
        events = extras.events or bool(getattr(request, "stream", False))
        return Envelope(job_id=job_id, request=request, deadline_s=deadline, events=events, account=extras.account,
                        notify=extras.notify)

    def _claim_idempotency(self, ids: list[str], idem: list[str | None], prints: list[str]) -> list[str]:
        """For each request, the job id that owns it: a fresh id, or the earlier job's for a reused key.
        A claim is ``<job id>:<fingerprint of the request>``; a key reused with another request is an
        IdempotencyConflict naming the first job (and this call's fresh claims are given back)."""
        owners = list(ids)
        wanted = [(i, keys.idempotency(_digest(k))) for i, k in enumerate(idem) if k]
        if not wanted:
            return owners
        pipe = self._redis.pipeline(transaction=False)
        for i, key in wanted:
            pipe.set(key, f"{ids[i]}:{prints[i]}", nx=True, ex=IDEMPOTENCY_TTL_S)
            pipe.get(key)
        replies = _call(pipe.execute)
        conflict: IdempotencyConflict | None = None
        for n, (i, key) in enumerate(wanted):
            claim = _text(replies[2 * n + 1])
            owner, _, owner_print = claim.partition(":")
            if owner != ids[i] and self._dangling(key, owner):
                claim = _call(self._take_over, key, claim, f"{ids[i]}:{prints[i]}")
                owner, _, owner_print = claim.partition(":")
            if owner != ids[i] and owner_print and owner_print != prints[i] and conflict is None:
                conflict = IdempotencyConflict(
                    f"idempotency_key {idem[i]!r} was first used for job {owner} with a different request; "
                    "use a new key for a new request", job_id=owner)
            owners[i] = owner
        if conflict is not None:
            self._release_claims([idem[i] for i in range(len(ids)) if idem[i] and owners[i] == ids[i]])
            raise conflict
        return owners

    def _dangling(self, key: str, owner: str) -> bool:
        """A claim whose job never reached Redis: its submit failed after the claim landed (e.g. Redis
        stalled mid-submit and ran the claim late). Old enough that no submit is still enqueueing it."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(Job.key_for(owner), keys.result(owner))
        pipe.ttl(key)
        found, ttl_s = _call(pipe.execute)
        return bool(found == 0 and IDEMPOTENCY_TTL_S - ttl_s > self._claim_grace_s())

    def _claim_grace_s(self) -> float:
        return 2 * self.settings.redis_timeout_s  # a live submit enqueues within its Redis timeout

    def _take_over(self, key: str, stale_owner: str, new_owner: str) -> str:
        """Compare-and-set the claim to ``new_owner``; the owner that holds it afterwards."""
        with self._redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                current = pipe.get(key)
                if current is not None and _text(current) != stale_owner:
                    return _text(current)
                pipe.multi()
                pipe.set(key, new_owner, ex=IDEMPOTENCY_TTL_S)
                pipe.execute()
                return new_owner
            except redis.WatchError:  # another retry took it over first: its job is the one
                return _text(self._redis.get(key) or b"") or new_owner

    def _release_claims(self, idempotency_keys: list[str | None]) -> None:
        """Enqueue failed: free the keys so the client's retry is not answered with a job that never existed."""
        names = [keys.idempotency(_digest(k)) for k in idempotency_keys if k]
        if names:
            with contextlib.suppress(redis.RedisError):  # Redis is down: the claims expire with their TTL
                self._redis.delete(*names)

    def _enqueue(self, queue: Queue, envelopes: list[Envelope], priority: str) -> None:
        if not envelopes:
            return
        timeout = int(max(e.deadline_s for e in envelopes)) + 120
        datas = [
            Queue.prepare_data(
                contract.TASK, args=[e.wire()], job_id=e.job_id, timeout=timeout,
                result_ttl=self.settings.result_ttl_s, failure_ttl=self.settings.result_ttl_s,
                description=f"genpool {e.request.kind} {e.job_id}", retry=Retry(max=contract.ABANDONED_RETRIES),
            )
            for e in envelopes
        ]
        def enqueue() -> None:
            # rq sends a few commands outside the pipeline too (e.g. queue registration): wrap all of it.
            pipe = self._redis.pipeline()
            for e in envelopes:  # 'queued' in the same transaction, so it comes before the worker's events
                if e.events:
                    publish_event(pipe, e.job_id, "queued", {"kind": e.request.kind, "priority": priority,
                                                             "account": e.account})
            queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()

        _call(enqueue)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _digest(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


def _fingerprint(request: Request) -> str:
    """The request as validated (defaults filled in), hashed: what an idempotency key is bound to."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()[:32]


def _conversations(parsed: list[Request]) -> dict[int, str]:
    """Index -> conversation id of the chat messages on a genpool-kept conversation; one per conversation."""
    found: dict[int, str] = {}
    for index, request in enumerate(parsed):
        if isinstance(request, ChatRequest) and request.conversation_id:
            if request.conversation_id in found.values():
                first = next(i for i, c in found.items() if c == request.conversation_id)
                raise ValidationError(f"requests {first} and {index}: two messages for conversation "
                                      f"{request.conversation_id!r} in one submit; send the second once the first "
                                      "is answered")
            found[index] = request.conversation_id
    return found


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a Redis command; an unreachable Redis becomes one clear genpool error."""
    try:
        return fn(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(f"cannot reach Redis ({exc}); check REDIS_URL and that Redis is running") from exc

