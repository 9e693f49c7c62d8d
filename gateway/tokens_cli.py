"""``genpool tokens``: make, list and revoke the gateway's bearer tokens.

    genpool tokens create NAME [--rpm N] [--usd-per-day X]   # prints the token, once
    genpool tokens list [--json]
    genpool tokens revoke NAME
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from genpool.gateway.settings import ApiSettings
from genpool.gateway.tokens import TokenStore
from genpool.shared.errors import GenpoolError
from genpool.shared.redisconn import connect
from genpool.shared.settings import Settings


def build_parser(api: ApiSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpool tokens", description="bearer tokens of the gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="make a token (printed once; only its hash is stored)")
    create.add_argument("name", help="1-32 of a-z 0-9 _ . -; the jobs' account")
    create.add_argument("--rpm", type=int, default=api.rpm, help=f"requests per minute (default {api.rpm})")
    create.add_argument("--usd-per-day", type=float, default=api.usd_per_day,
                        help=f"USD per UTC day of finished jobs (default {api.usd_per_day:g})")
    listing = sub.add_parser("list", help="names and limits (never the tokens)")
    listing.add_argument("--json", action="store_true")
    revoke = sub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        api = ApiSettings.from_env()
        args = build_parser(api).parse_args(argv)
        store = TokenStore(connect(Settings.from_env()))
        return run(store, args)
    except GenpoolError as exc:
        print(f"genpool tokens: {exc}", file=sys.stderr)
        return 2 if exc.kind in ("invalid_request", "config") else 1


def run(store: TokenStore, args: argparse.Namespace) -> int:
    if args.command == "create":
        print(store.create(args.name, args.rpm, args.usd_per_day))
        return 0
    if args.command == "revoke":
        if store.revoke(args.name):
            print(f"revoked {args.name}")
            return 0
        print(f"genpool tokens: no token named {args.name!r}", file=sys.stderr)
        return 1
    tokens = store.list()
    if args.json:
        print(json.dumps([t.model_dump() for t in tokens]))
    for t in [] if args.json else tokens:
        print(f"{t.name}  rpm={t.rpm}  usd_per_day={t.usd_per_day:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
