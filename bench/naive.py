"""The baseline for bench_quota: a naive pool as the seed designs it, written the way a competent user would.

    python -m bench.naive --redis-url URL --sim-url URL --models a,b,c --retries 2,2,3

One such process is one worker; the benchmark starts 16. Each has its own google-genai Client and its
own tenacity retries (exponential backoff with jitter on 429, 5xx, timeouts and dropped connections),
then falls back down the chain; a job that every model refused goes back on the queue (never lost).
What it does not have is genpool's point: no shared limiter, so nothing tells one process what the
other fifteen are spending, and Gemini's RetryInfo is not read (the SDK does not surface it; a user
writing plain tenacity rarely digs it out of the error body).

Its queue is a plain Redis list; the benchmark gives it its own Redis database, away from genpool's keys.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import redis
import tenacity
from google import genai
from google.genai import errors, types

QUEUE = "naive:jobs"
DONE = "naive:done"  # hash: model -> jobs finished on it
REQUEUED = "naive:requeued"
READY = "naive:ready"
RETRY_CODES = {408, 429, 500, 502, 503, 504}
POP_TIMEOUT_S = 1


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, errors.APIError):
        return exc.code in RETRY_CODES
    return not isinstance(exc, ValueError | TypeError)  # transport errors and timeouts: yes; our bugs: no


def call_with_retries(client: genai.Client, model: str, prompt: str, max_retries: int) -> None:
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=tenacity.wait_exponential_jitter(initial=1, max=30, jitter=1),
        retry=tenacity.retry_if_exception(retryable),
        reraise=True,
    )
    retrying(client.models.generate_content, model=model, contents=prompt)


def run_job(client: genai.Client, chain: Sequence[tuple[str, int]], prompt: str) -> str | None:
    """The model that answered, or None when every model in the chain gave up."""
    for model, max_retries in chain:
        try:
            call_with_retries(client, model, prompt, max_retries)
            return model
        except Exception:  # noqa: BLE001 - any failure: fall back to the next model
            continue
    return None


def work(conn: redis.Redis, client: genai.Client, chain: Sequence[tuple[str, int]]) -> None:
    conn.incr(READY)
    while True:
        item = conn.blpop([QUEUE], timeout=POP_TIMEOUT_S)
        if item is None:
            continue
        prompt = item[1].decode()
        model = run_job(client, chain, prompt)
        if model is None:
            conn.rpush(QUEUE, prompt)
            conn.incr(REQUEUED)
        else:
            conn.hincrby(DONE, model, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True, help="a Redis database of its own")
    parser.add_argument("--sim-url", required=True)
    parser.add_argument("--api-key", default="naive-pool-local-key")
    parser.add_argument("--models", required=True, help="the chain, comma-separated")
    parser.add_argument("--retries", required=True, help="max retries per model, comma-separated")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    chain = list(zip(args.models.split(","), (int(n) for n in args.retries.split(",")), strict=True))
    client = genai.Client(api_key=args.api_key, http_options=types.HttpOptions(
        base_url=args.sim_url, timeout=int(args.timeout_s * 1000)))
    conn = redis.Redis.from_url(args.redis_url)
    try:
        work(conn, client, chain)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
