"""The irreducible parts of a genpool job, each alone in its own process: one google-genai call with a
reused Client, and one boto3 put_object with a reused client. Prints CPU seconds per call as JSON.

    python -m bench.raw_calls genai|s3 --count N [--threads T]   (reads the stack's env like a worker)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.workerkit import MODEL

PROMPT = "Write a two-line poem about job number {i} of a worker pool."
BODY_BYTES = 400  # about a two-line poem's answer


def genai_call(same_request: bool = False) -> Callable[[int], object]:
    """A bare prompt; or (``same_request``) what genpool sends for a default text job: its safety
    settings and a per-call timeout, so the SDK converts a config too."""
    import httpx2
    from google import genai
    from google.genai import types

    from genpool.shared.jobs import HARM_CATEGORIES

    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=256)
    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options=types.HttpOptions(
        base_url=os.environ["GEMINI_BASE_URL"], timeout=30_000, client_args={"limits": limits}))
    if not same_request:
        return lambda i: client.models.generate_content(model=MODEL, contents=PROMPT.format(i=i)).text
    safety = [types.SafetySetting(category=c, threshold="BLOCK_MEDIUM_AND_ABOVE") for c in HARM_CATEGORIES]

    def call(i: int) -> object:
        config = types.GenerateContentConfig(safety_settings=safety, http_options=types.HttpOptions(timeout=30_000))
        return client.models.generate_content(model=MODEL, contents=PROMPT.format(i=i), config=config).text

    return call


def s3_put(body_bytes: int) -> Callable[[int], object]:
    """A bare put_object on genpool's own S3 client (shared/storage.py: no per-call parameter validation, no
    CRC32 where S3 requires none, no 100-continue for a small body, one fixed User-Agent): the cheapest put
    boto3 makes, so that genpool's own savings there do not count as part of its margin."""
    from genpool.shared.settings import Settings
    from genpool.shared.storage import S3Store

    client = S3Store.from_settings(Settings.from_env(dotenv_path=None))._client  # noqa: SLF001 - the same client
    bucket = os.environ["S3_BUCKET"]
    body = b"x" * body_bytes
    return lambda i: client.put_object(Bucket=bucket, Key=f"raw/{uuid.uuid4().hex}.txt", Body=body,
                                       ContentType="text/plain; charset=utf-8")


def cpu_per_call(op: Callable[[int], object], count: int, threads: int) -> float:
    for i in range(min(50, count)):  # warm up: connections, lazy imports
        op(i)
    started = time.process_time()
    if threads <= 1:
        for i in range(count):
            op(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(op, range(count)))
    return (time.process_time() - started) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("genai", "genai-same", "s3"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--body-bytes", type=int, default=BODY_BYTES)
    args = parser.parse_args(argv)
    op = s3_put(args.body_bytes) if args.part == "s3" else genai_call(same_request=args.part == "genai-same")
    print(json.dumps({"part": args.part, "cpu_s_per_call": cpu_per_call(op, args.count, args.threads)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
