"""`genpool budget`: USD per Pacific day per model and for the whole pool.

``show`` lists each budget (limit, spent today, held by calls in flight, share spent) and what every model
spent today; ``set MODEL|pool USD`` sets one (``none`` removes it). A budget set mid-day counts what the
metrics counted today. Setting or raising a budget puts the jobs waiting for a spent budget back at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from genpool.ops.command import run_tool
from genpool.shared.budget import POOL, micro_to_usd, parse_usd
from genpool.shared.catalog import load_catalog
from genpool.shared.errors import EXIT_OK, ValidationError
from genpool.shared.ratelimit.budgets import BudgetState, BudgetStore
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings


def describe(store: BudgetStore) -> dict[str, Any]:
    """`genpool budget show --json` (and `genpool stats --json`, key ``budgets``)."""
    _, limits = store.registry()
    states = store.states(sorted(limits, key=lambda s: (s != POOL, s)))
    return {"budgets": {s.scope: state_json(s) for s in states},
            "spent_today_usd": {m: micro_to_usd(v) for m, v in sorted(store.spend_today().items())}}


def state_json(state: BudgetState) -> dict[str, Any]:
    r = state.record
    status = "spent" if r.limit and r.spent >= r.limit else ("held" if r.limit and r.spent + r.held >= r.limit
                                                              else "ok")
    return {"limit_usd": micro_to_usd(r.limit), "spent_usd": micro_to_usd(r.spent), "held_usd": micro_to_usd(r.held),
            "percent": round(r.percent, 1), "alerted": r.alerted, "status": status}


def _print_show(data: dict[str, Any]) -> None:
    if not data["budgets"]:
        print("no budget set (`genpool budget set MODEL|pool USD`)")
    for scope, b in data["budgets"].items():
        print(f"{scope:<28} ${b['limit_usd']:,.2f}/day  spent ${b['spent_usd']:,.4f} ({b['percent']:.1f} %)  "
              f"held ${b['held_usd']:,.4f}  {b['status']}")
    spent = data["spent_today_usd"]
    if spent:
        print("spent today: " + ", ".join(f"{m} ${v:,.4f}" for m, v in spent.items()))


def run(args: argparse.Namespace, settings: Settings) -> int:
    conn = connect(settings)
    store = BudgetStore(conn)
    if args.action == "show":
        data = describe(store)
        print(json.dumps(data, sort_keys=True)) if args.json else _print_show(data)
        return EXIT_OK
    scope = args.scope
    if scope != POOL and scope not in load_catalog(settings).models:
        raise ValidationError(f"unknown model {scope!r}: not in the catalog (or use 'pool' for the whole pool)")
    limit = parse_usd(args.usd)
    record = store.set(scope, limit)
    from genpool.worker.pool import resume_parked  # the worker's side of the queues: only for `set`

    resumed = resume_parked(conn)
    what = (f"${micro_to_usd(limit):,.2f} per Pacific day; spent today ${micro_to_usd(record.spent):,.4f}"
            if limit else "no budget")
    print(f"{scope}: {what}" + (f"; {resumed} waiting jobs back on their queues" if resumed else ""))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpool budget", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="each budget: limit, spent today, held by calls in flight")
    show.add_argument("--json", action="store_true")
    setter = sub.add_parser("set", help="USD per Pacific day for a model or the pool (none removes it)")
    setter.add_argument("scope", metavar="MODEL|pool")
    setter.add_argument("usd", metavar="USD")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_tool("budget", lambda: run(args, Settings.from_env()))
