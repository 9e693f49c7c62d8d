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


def metrics_timeline(hour: int) -> str:
    """Hash (TTL): calls per model per 10 s slot in one hour (field '<slot>|<model>|<outcome>'), for the report."""
    return f"{METRICS_PREFIX}:timeline:{hour}"
