"""`genpool stats`: per-model and per-kind counters, fallbacks, failures, latency, limiter waits, model state,
bucket levels against limits, and queue depths; a rich table, ``--json`` for scripts, ``--watch`` to refresh."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis

from genpool.ops.snapshot import catalog_limits, take
from genpool.ops.summary import summarize
from genpool.shared.catalog import load_catalog
from genpool.shared.errors import GenpoolError
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings


def collect(conn: redis.Redis, settings: Settings) -> dict[str, Any]:
    """Everything `genpool stats --json` prints, for the catalog's models and any model the counters name."""
    catalog = load_catalog(settings)
    return summarize(take(conn, catalog.models, catalog_limits(catalog), catalog))


def tidy(value: Any) -> Any:
    """Counters are floats in Redis (INCRBYFLOAT): whole numbers print as integers, the rest (costs,
    seconds) to 12 significant digits, so no float noise (0.30000000000000004) reaches a script."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: tidy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tidy(v) for v in value]
    return value


def _show(data: dict[str, Any], as_json: bool, clear: bool, by_arm: bool = False) -> None:
    if as_json:
        print(json.dumps(tidy(data), sort_keys=True), flush=True)
        return
    from rich.console import Console

    from genpool.ops.tables import render, render_arms

    console = Console()
    if clear:
        console.clear()
    console.print(render_arms(data) if by_arm else render(data))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool stats")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--watch", type=float, nargs="?", const=2.0, help="refresh every N seconds")
    parser.add_argument("--by-arm", action="store_true", help="compare the A/B arms of each job kind")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        conn = connect(settings)
        while True:
            _show(collect(conn, settings), args.json, clear=bool(args.watch), by_arm=args.by_arm)
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except redis.RedisError as exc:
        print(f"genpool stats: cannot reach Redis at REDIS_URL: {exc}", file=sys.stderr)
        return 1
    except GenpoolError as exc:
        print(f"genpool stats: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
