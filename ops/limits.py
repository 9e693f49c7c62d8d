"""`genpool limits`: the limits every worker's limiter uses, and the operator's run-time override.

``show`` lists per model the effective limits, the catalog's (written by the last worker to start) and
the override; ``set MODEL rpm=.. tpm=..`` overrides fields until ``reset MODEL`` drops the override.
A worker start writes its catalog's limits but keeps the override on top (and logs that it did).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import redis

from genpool.ops.command import run_tool
from genpool.ops.snapshot import catalog_limits
from genpool.shared import keys
from genpool.shared.catalog import load_catalog
from genpool.shared.errors import EXIT_OK, ValidationError
from genpool.shared.ratelimit import ModelLimits, RedisLimiter
from genpool.shared.ratelimit.limits import FIELD_NAMES
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings


def known_models(conn: redis.Redis, catalog_models: Sequence[str]) -> list[str]:
    """The catalog's models and every model Redis holds limits for."""
    found = set(catalog_models)
    prefix, suffix = keys.model_limits("\0").split("\0")
    for raw in conn.scan_iter(match=f"{prefix}*{suffix}", count=500):
        name = raw.decode()
        found.add(name[len(prefix):-len(suffix)])
    return sorted(found)


def describe(limiter: RedisLimiter, model: str, default: ModelLimits | None) -> dict[str, Any]:
    effective = limiter.get_limits(model)
    catalog = limiter.get_catalog(model)
    return {"effective": _fields(effective or default), "catalog": _fields(catalog or default),
            "override": limiter.get_override(model), "in_redis": effective is not None}


def _fields(limits: ModelLimits | None) -> dict[str, Any] | None:
    return None if limits is None else {name: getattr(limits, name) for name in FIELD_NAMES}


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["rpm=60", "tpm=1000"]`` -> ``{"rpm": "60", "tpm": "1000"}``; a malformed item is a usage error."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValidationError(f"expected FIELD=VALUE, got {item!r} (fields: {', '.join(FIELD_NAMES)})")
        out[name.strip()] = value.strip()
    return out


def _print_show(data: dict[str, dict[str, Any]]) -> None:
    for model, entry in data.items():
        eff = entry["effective"] or {}
        dims = " ".join(f"{d}={eff.get(d, 0)}" for d in ("rpm", "tpm", "ipm", "rpd"))
        margins = f"window {eff.get('window_s', '-')} s, safety {eff.get('safety', '-')}, guard {eff.get('guard_ms', '-')} ms"
        override = " ".join(f"{k}={v}" for k, v in sorted(entry["override"].items()))
        tag = f"  OVERRIDE {override} (catalog: " + " ".join(
            f"{k}={(entry['catalog'] or {}).get(k, '-')}" for k in sorted(entry["override"])) + ")" if override else ""
        print(f"{model}  {dims}  ({margins}){tag}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_catalog(settings)
    defaults = catalog_limits(catalog)
    conn = connect(settings)
    limiter = RedisLimiter(conn, defaults)
    if args.action == "show":
        models = args.models or known_models(conn, list(catalog.models))
        data = {m: describe(limiter, m, defaults.get(m)) for m in models}
        print(json.dumps(data, sort_keys=True)) if args.json else _print_show(data)
        return EXIT_OK
    if args.model not in defaults and limiter.get_limits(args.model) is None:
        raise ValidationError(f"unknown model {args.model!r}: not in the catalog and no limits in Redis")
    if args.action == "set":
        updated = limiter.set_limits(args.model, **parse_assignments(args.fields))  # type: ignore[arg-type]
        print(f"{args.model}: override {' '.join(args.fields)} in force until `genpool limits reset {args.model}`"
              f" -> rpm={updated.rpm} tpm={updated.tpm} ipm={updated.ipm} rpd={updated.rpd}")
    else:
        restored = limiter.reset_limits(args.model)
        print(f"{args.model}: back to the catalog -> rpm={restored.rpm} tpm={restored.tpm} ipm={restored.ipm} "
              f"rpd={restored.rpd}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpool limits", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="effective limits, the catalog's and the override, per model")
    show.add_argument("models", nargs="*")
    show.add_argument("--json", action="store_true")
    setter = sub.add_parser("set", help="override some fields until reset, e.g. rpm=60 tpm=100000")
    setter.add_argument("model")
    setter.add_argument("fields", nargs="+", metavar="FIELD=VALUE")
    reset = sub.add_parser("reset", help="drop the override: back to the catalog's limits")
    reset.add_argument("model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_tool("limits", lambda: run(args, Settings.from_env()))
