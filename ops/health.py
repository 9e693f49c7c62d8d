"""`genpool health`: Redis, the S3 bucket (write + read + delete a probe), the Gemini key and each chain
model (a metadata call, not a generation), live workers and queue depth. Exit 0 when all is well."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from genpool.shared import keys
from genpool.shared.errors import GenpoolError
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings

Check = tuple[str, bool, str]


def _check(name: str, fn: Callable[[], str]) -> Check:
    try:
        return name, True, fn()
    except GenpoolError as exc:
        return name, False, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check, reported in one line
        return name, False, f"{type(exc).__name__}: {exc}"


def check_redis(settings: Settings) -> str:

    conn = connect(settings)
    conn.ping()
    return "ping ok"


def check_s3(settings: Settings) -> str:
    from genpool.shared.storage import S3Store

    store = S3Store.from_settings(settings)
    store.probe(settings.s3_prefix)
    return f"bucket {store.bucket}: write + read + delete ok"


def check_models(settings: Settings) -> list[Check]:
    from genpool.shared.catalog import load_catalog
    from genpool.worker.gemini import GeminiGateway

    catalog = load_catalog(settings)
    gateway = GeminiGateway(settings)
    models = sorted({m for chain in catalog.chains.values() for m in chain})
    return [_check(f"model {m}", lambda m=m: (gateway.get_model(m), "available")[1]) for m in models]


def check_workers(settings: Settings) -> str:
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    conn = connect(settings)
    depth = {p: Queue(keys.queue_name(p), connection=conn, serializer=JSONSerializer).count for p in keys.PRIORITIES}
    workers = Worker.count(connection=conn)
    queued = ", ".join(f"{p}={n}" for p, n in depth.items())
    if workers == 0:
        raise GenpoolError(f"no worker alive: nothing will run the queued jobs ({queued}); start `genpool worker`")
    return f"{workers} workers alive; queued: {queued}"


def run_checks(settings: Settings) -> list[Check]:
    checks = [_check("redis", lambda: check_redis(settings)), _check("s3", lambda: check_s3(settings))]
    if not settings.gemini_api_key:
        checks.append(("gemini key", False, "GEMINI_API_KEY is not set"))
    else:
        model_checks = check_models(settings)
        if model_checks and all(not ok for _, ok, _ in model_checks):
            checks.append(("gemini key", False, model_checks[0][2]))
        checks += model_checks
    if checks[0][1]:
        checks.append(_check("workers", lambda: check_workers(settings)))
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool health")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except GenpoolError as exc:
        print(f"genpool health: {exc}", file=sys.stderr)
        return 1
    checks = run_checks(settings)
    healthy = all(ok for name, ok, _ in checks if not name.startswith("model ")) and any(
        ok for name, ok, _ in checks if name.startswith("model "))
    if args.json:
        print(json.dumps({"healthy": healthy, "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks]}))
    else:
        for name, ok, detail in checks:
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if healthy else 1
