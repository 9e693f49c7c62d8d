"""`genpool stats`: per-model requests, outcomes, fallbacks, tokens and cost from the shared counters."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis

from shared import keys
from shared.metrics import read_counters
from shared.settings import Settings


def collect(conn: redis.Redis) -> dict[str, Any]:
    """Counters aggregated per model and per kind, as plain JSON-able dicts."""
    rows = read_counters(conn.hgetall(keys.metrics_counters()))
    models: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    fallbacks: dict[str, float] = defaultdict(float)
    for name, labels, value in rows:
        model = labels.get("model")
        if name == "attempts_total" and model:
            models[model]["requests"] += value
            models[model][f"outcome:{labels['outcome']}"] += value
        elif name in ("tokens_in_total", "tokens_out_total", "cost_usd_total", "images_total",
                      "limiter_wait_seconds_total", "latency_seconds_sum") and model:
            models[model][name] += value
        elif name == "skipped_total" and model:
            models[model][f"skipped:{labels['reason']}"] += value
        elif name == "fallbacks_total":
            fallbacks[f"{labels['from']}->{labels['to']}"] += value
        if name == "jobs_total":
            kinds[labels["kind"]][labels["status"]] += value
    return {"models": {m: dict(v) for m, v in models.items()}, "kinds": {k: dict(v) for k, v in kinds.items()},
            "fallbacks": dict(fallbacks)}


def _table(data: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="genpool: per-model")
    for col in ("model", "requests", "ok", "429", "errors", "tokens in", "tokens out", "cost $", "mean latency s"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for model, m in sorted(data["models"].items()):
        requests = m.get("requests", 0)
        ok = m.get("outcome:ok", 0)
        limited = m.get("outcome:rate_limited", 0)
        latency = m.get("latency_seconds_sum", 0) / requests if requests else 0
        table.add_row(model, f"{requests:.0f}", f"{ok:.0f}", f"{limited:.0f}", f"{requests - ok - limited:.0f}",
                      f"{m.get('tokens_in_total', 0):.0f}", f"{m.get('tokens_out_total', 0):.0f}",
                      f"{m.get('cost_usd_total', 0):.4f}", f"{latency:.3f}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool stats")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--watch", type=float, nargs="?", const=2.0, help="refresh every N seconds")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s)
    try:
        while True:
            data = collect(conn)
            if args.json:
                print(json.dumps(data, sort_keys=True))
            else:
                from rich.console import Console

                Console().print(_table(data))
                if data["fallbacks"]:
                    print("fallbacks: " + ", ".join(f"{k} x{v:.0f}" for k, v in data["fallbacks"].items()))
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except redis.RedisError as exc:
        print(f"genpool stats: cannot reach Redis at REDIS_URL: {exc}", file=sys.stderr)
        return 1
