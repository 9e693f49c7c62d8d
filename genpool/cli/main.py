"""The `genpool` command: thin, it parses arguments, calls the producer API and prints.

Commands that need the worker side (worker, sim, stats, health, report, result --out) import it lazily,
so `genpool submit` needs only the client's dependencies. Every failure is one line on stderr and an exit
code (0 ok, 1 a failed job / unhealthy / unreachable, 2 usage or input); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from genpool.cli import jobs
from genpool.shared.errors import EXIT_USAGE, GenpoolError, exit_code


def _pool() -> Any:
    from genpool.producer.client import GenPool

    return GenPool.from_env()


def cmd_submit(args: argparse.Namespace) -> int:
    return jobs.cmd_submit(_pool(), args)


def cmd_submit_file(args: argparse.Namespace) -> int:
    from genpool.cli.batch import submit_file

    return submit_file(_pool(), Path(args.file), priority=args.priority, wait=args.wait, as_json=args.json,
                       timeout_s=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    return jobs.cmd_status(_pool(), args)


def cmd_result(args: argparse.Namespace) -> int:
    return jobs.cmd_result(_pool(), args)


DELEGATED = {"worker": ("genpool.worker.main", "run workers"), "sim": ("genpool.sim.cli", "run the Gemini simulator"),
             "stats": ("genpool.ops.stats", "per-model metrics"), "health": ("genpool.ops.health", "health check"),
             "metrics": ("genpool.ops.prometheus", "Prometheus endpoint"),
             "limits": ("genpool.ops.limits", "the limiter's limits per model: show | set MODEL rpm=.. | reset MODEL"),
             "models": ("genpool.ops.models", "the chain per job kind: show | set-chain KIND M1,M2 | split KIND "
                        "MODEL=PCT | rollback KIND"),
             "budget": ("genpool.ops.budget", "USD per day per model and for the pool: show | set MODEL|pool USD"),
             "report": ("genpool.ops.report", "HTML report: requests/min vs quota, fallbacks, cost"),
             "api": ("genpool.gateway.serve", "the HTTP and WebSocket gateway (docs/gateway.md)"),
             "tokens": ("genpool.gateway.tokens_cli", "the gateway's bearer tokens: create, list, revoke")}


def _delegate(module: str, rest: Sequence[str]) -> int:
    """Commands with their own argument parser, imported only when used."""
    import importlib

    return int(importlib.import_module(module).main(list(rest)))


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (--help for usage)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"genpool {version('genpool')}"
    except PackageNotFoundError:
        return "genpool (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genpool", description="Gemini generation jobs on a worker pool. Exit codes: 0 ok, "
                    "1 a job failed / unhealthy / a service unreachable, 2 usage or input.")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("submit", help="submit one job; --wait prints its answer")
    jobs.add_submit_arguments(p)
    _common(p)
    p.add_argument("--idempotency-key")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("submit-file", help="submit one job per JSONL line")
    p.add_argument("file")
    _common(p)
    p.set_defaults(func=cmd_submit_file)

    p = sub.add_parser("status", help="a job's status")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("result", help="a job's result record (and its output with --out)")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="download the stored output to this path")
    p.set_defaults(func=cmd_result)

    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--priority", choices=["high", "default", "low"], default="default")
    p.add_argument("--wait", action="store_true", help="wait for the result")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:1]
    if debug:
        argv = argv[1:]
    try:
        if argv and argv[0] in DELEGATED:
            return _delegate(DELEGATED[argv[0]][0], argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure is one line (the traceback with --debug)
        return _report(exc, debug)


def _report(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"genpool: {one_line(exc)}", file=sys.stderr)
    return exit_code(exc)


def one_line(exc: BaseException) -> str:
    """The error's message on one line; an unexpected error says its type and where --debug helps."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, GenpoolError | TimeoutError):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
