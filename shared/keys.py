"""Every Redis key genpool uses, in one place.

Per-model keys carry a hash tag (``{m:<model>}``) so that all of one model's keys live in the same
Redis Cluster slot and a single Lua script may touch them all.
"""

from __future__ import annotations

PREFIX = "genpool"

# Queues are RQ's own keys (rq:queue:<name>); these are genpool's queue names per priority.
QUEUE_PREFIX = "genpool"
PRIORITIES = ("high", "default", "low")


def queue_name(priority: str) -> str:
    return f"{QUEUE_PREFIX}-{priority}"


def _model_tag(model: str) -> str:
    return f"{PREFIX}:{{m:{model}}}"


def model_limits(model: str) -> str:
    """Hash: the model's effective limits (rpm tpm rpd ipm window_ms safety guard_ms) that acquire reads:
    the catalog's overlaid with the operator's override. Written only by ``ratelimit/lua/limits.lua``."""
    return f"{_model_tag(model)}:limits"


def model_limits_catalog(model: str) -> str:
    """Hash: the limits in the catalog of the worker that started last (it wins at start)."""
    return f"{_model_tag(model)}:limits:catalog"


def model_limits_override(model: str) -> str:
    """Hash: an operator's run-time override (``genpool limits set``) until ``genpool limits reset``."""
    return f"{_model_tag(model)}:limits:override"


def model_window(model: str) -> str:
    """String: the admission record's header, integers: slot_ms lo hi last_ms s1 s2 s3 rpd_day rpd_count
    h1 h2 h3 (ratelimit/lua/_window.lua)."""
    return f"{_model_tag(model)}:window"


def model_slots(model: str) -> str:
    """Hash (expires when idle): per older live slot k, 'requests tokens images next_slot'."""
    return f"{_model_tag(model)}:slots"


def model_state(model: str) -> str:
    """Hash: fleet-wide availability: cooldown (429), unavailable (404), circuit breaker fields."""
    return f"{_model_tag(model)}:state"


def model_budget(model: str) -> str:
    """Hash: the model's USD budget per Pacific day, in micro-USD: limit, day, spent, held, alerted
    (shared/budget.py). In the model's hash tag: acquire and settle touch it in the model's own script call."""
    return f"{_model_tag(model)}:budget"


def pool_budget() -> str:
    """Hash: the whole pool's budget record (fields as ``model_budget``). Outside every model's hash tag, so a
    script that touches it with a model's keys is not Redis Cluster slot-safe (RQ does not run on Cluster)."""
    return f"{PREFIX}:budget:pool"


def budgets() -> str:
    """Hash: which budgets exist (field ``model:<id>`` or ``pool`` -> limit micro-USD) and ``version``,
    polled by the workers so acquire passes budget keys only when a budget is set."""
    return f"{PREFIX}:budgets"


def budget_parked() -> str:
    """Sorted set: '<queue>|<job id>' of jobs deferred because a budget was spent (score: when); `genpool budget
    set` moves them back to now."""
    return f"{PREFIX}:budget:parked"


def spend_day(day: int) -> str:
    """Hash (TTL): micro-USD spent per model on one Pacific day (``day`` = days since the epoch, Pacific)."""
    return f"{PREFIX}:spend:{day}"


def routing() -> str:
    """Hash: the routing in force: ``version`` and per job kind ``chain:<kind>`` (m1,m2,..) and
    ``split:<kind>`` (model=basis points,..). Written only by ``shared/lua/routing.lua``."""
    return f"{PREFIX}:routing"


def routing_catalog() -> str:
    """Hash: the chains of the catalog + environment of the worker that started last (it wins at start)."""
    return f"{PREFIX}:routing:catalog"


def routing_override() -> str:
    """Hash: an operator's run-time chains and splits (`genpool models set-chain | split`) until rollback."""
    return f"{PREFIX}:routing:override"


def job_route(job_id: str) -> str:
    """String (TTL): the route a job resolved at its first start, 'version|arm|m1,m2,..', kept across re-runs."""
    return f"{PREFIX}:route:{job_id}"


def cache_entry(digest: str) -> str:
    """String (JSON, TTL): a stored answer for a request digest (worker/cache.py)."""
    return f"{PREFIX}:cache:{digest}"


def cache_lead(digest: str) -> str:
    """String (lease): the job making the paid call for a request digest; the others wait for its answer."""
    return f"{PREFIX}:cache:{digest}:lead"


def result(job_id: str) -> str:
    """String (JSON): the job's genpool result record."""
    return f"{PREFIX}:result:{job_id}"


def idempotency(key_digest: str) -> str:
    """String: job id that owns an idempotency key (digest of the client's key)."""
    return f"{PREFIX}:idem:{key_digest}"


def conversation(conversation_id: str) -> str:
    """List (JSON turns): a chat conversation's history."""
    return f"{PREFIX}:conv:{conversation_id}"


def conversation_turn(conversation_id: str) -> str:
    """String: the turn in progress of a conversation (``pending:<token>`` or ``job:<id>``); whoever sends
    holds it so that two senders' turns cannot interleave (shared/turns.py)."""
    return f"{PREFIX}:convturn:{conversation_id}"


def job_lock(job_id: str) -> str:
    """String: held by the worker that is generating a job, so a retried job is not paid twice."""
    return f"{PREFIX}:lock:{job_id}"


def spool_index() -> str:
    """Set: object keys of results waiting in a worker's local spool for S3 to come back."""
    return f"{PREFIX}:spool"


METRICS_PREFIX = f"{PREFIX}:metrics"


def metrics_counters() -> str:
    """Hash: every counter, field = '<name>|<label>=<value>|...'."""
    return f"{METRICS_PREFIX}:counters"


def metrics_latency(model: str) -> str:
    """Hash: latency histogram buckets for one model."""
    return f"{METRICS_PREFIX}:latency:{model}"


def metrics_duration(kind: str, arm: str) -> str:
    """Hash: job duration histogram per job kind and routing arm (field = bucket upper bound, value = jobs)."""
    return f"{METRICS_PREFIX}:duration:{kind}:{arm}"


def metrics_timeline(hour: int) -> str:
    """Hash (TTL): calls per model per 10 s slot in one hour (field '<slot>|<model>|<outcome>'), for the report."""
    return f"{METRICS_PREFIX}:timeline:{hour}"


# --- live progress and the HTTP gateway (genpool.gateway) ---------------------------------------------

def job_events(job_id: str) -> str:
    """Stream: a job's progress events (shared/events.py), capped and expiring; only for jobs submitted
    with events (the gateway's)."""
    return f"{PREFIX}:events:{job_id}"


def conversation_state(conversation_id: str) -> str:
    """String (JSON): the latest structured reply of a conversation whose chat carries a json_schema."""
    return f"{PREFIX}:convstate:{conversation_id}"


def account_spend(account: str, day: str) -> str:
    """String (float): USD spent by an account's finished jobs on one UTC day (``YYYYMMDD``)."""
    return f"{PREFIX}:spend:{account}:{day}"


def api_tokens() -> str:
    """Hash: sha256 of a gateway bearer token -> the token's record (JSON: name, limits). Never the token."""
    return f"{PREFIX}:api:tokens"


def api_token_names() -> str:
    """Hash: token name -> sha256 of its token (names are unique; revoke by name)."""
    return f"{PREFIX}:api:token-names"


def api_job_owner(job_id: str) -> str:
    """String: the account (token name) that submitted a job through the gateway; only it may read it."""
    return f"{PREFIX}:api:owner:{job_id}"


def api_rate(account: str) -> str:
    """String: an account's request-rate state (GCRA theoretical arrival time, ms)."""
    return f"{PREFIX}:api:rate:{account}"


def results_notify(waiter: str) -> str:
    """Stream (TTL, kept by its waiters): ids of the jobs a producer submitted with ``notify`` whose records
    are written; workers add to it only while it exists (shared/notify.py)."""
    return f"{PREFIX}:notify:{waiter}"
