"""`genpool models`: the routing in force (chains per job kind, A/B splits) and the operator's override.

``show`` lists per kind the chain in force, the catalog's (written by the last worker to start) and any
override or split; ``set-chain KIND M1,M2`` and ``split KIND MODEL=PCT`` override until ``rollback KIND``.
Workers pick a change up within a second, without a restart; jobs already started keep their chain.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from genpool.ops.command import run_tool
from genpool.shared import contract
from genpool.shared.catalog import Catalog, load_catalog
from genpool.shared.errors import EXIT_OK
from genpool.shared.redisconn import connect
from genpool.shared.routing import (
    RoutingChange,
    RoutingStore,
    check_kind,
    describe_splits,
    parse_chain,
    parse_split_text,
    parse_splits,
)
from genpool.shared.settings import Settings


def describe(store: RoutingStore) -> dict[str, Any]:
    """The routing as `genpool models show --json` (and `genpool stats --json`, key ``routing``) prints it."""
    table, catalog, override = store.read(), store.catalog(), store.override()
    kinds = {}
    for kind, route in table.kinds.items():
        kinds[kind] = {
            "chain": list(route.chain),
            "split": {s.model: s.percent for s in route.splits},
            "catalog": [m for m in catalog.get(f"chain:{kind}", "").split(",") if m],
            "override": {"chain": [m for m in override[f"chain:{kind}"].split(",")] if f"chain:{kind}" in override
                         else None,
                         "split": {s.model: s.percent for s in parse_split_text(override.get(f"split:{kind}", ""))}},
        }
    return {"version": table.version, "kinds": kinds}


def _print_show(data: dict[str, Any]) -> None:
    print(f"routing v{data['version']}")
    for kind, entry in data["kinds"].items():
        overridden = entry["override"]["chain"] is not None
        source = "OVERRIDE (catalog: " + ",".join(entry["catalog"]) + ")" if overridden else "catalog"
        split = "  split " + ", ".join(f"{m}={p:g}%" for m, p in entry["split"].items()) if entry["split"] else ""
        print(f"{kind:<6} {','.join(entry['chain'])}  [{source}]{split}")


def _print_change(kind: str, change: RoutingChange, until: bool = True) -> None:
    lines = change.lines() or [f"{kind}: unchanged"]
    tail = f"; until `genpool models rollback {kind}`" if until and change.changed else ""
    for line in lines:
        print(f"{line} (v{change.after.version}{tail})")


def run(args: argparse.Namespace, settings: Settings) -> int:
    catalog = load_catalog(settings)
    store = RoutingStore(connect(settings), catalog)
    if args.action == "show":
        data = describe(store)
        print(json.dumps(data, sort_keys=True)) if args.json else _print_show(data)
        return EXIT_OK
    return _change(args, catalog, store)


def _change(args: argparse.Namespace, catalog: Catalog, store: RoutingStore) -> int:
    if args.action == "rollback":
        kinds = list(contract.JOB_KINDS) if args.kind == "all" else [check_kind(args.kind)]
        _print_change(args.kind, store.rollback(kinds), until=False)
        return EXIT_OK
    kind = check_kind(args.kind)
    if args.action == "set-chain":
        change = store.set_chain(kind, parse_chain(catalog, kind, args.chain))
    else:
        change = store.set_splits(kind, parse_splits(catalog, kind, args.arms))
        if not change.after.kinds[kind].splits:
            print(f"{kind}: no split ({describe_splits(())})")
    _print_change(kind, change)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpool models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="the chain in force per job kind, the catalog's, overrides and splits")
    show.add_argument("--json", action="store_true")
    chain = sub.add_parser("set-chain", help="run a kind's jobs on this chain until rollback")
    chain.add_argument("kind", help=f"one of {', '.join(contract.JOB_KINDS)}")
    chain.add_argument("chain", metavar="M1,M2,..")
    split = sub.add_parser("split", help="send a share of a kind's jobs to a candidate model first (0 ends it)")
    split.add_argument("kind")
    split.add_argument("arms", nargs="+", metavar="MODEL=PERCENT")
    rollback = sub.add_parser("rollback", help="drop a kind's override and split: back to the catalog's chain")
    rollback.add_argument("kind", help="a job kind, or all")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_tool("models", lambda: run(args, Settings.from_env()))
