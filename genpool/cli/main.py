"""The `genpool` command: thin, it parses arguments, calls the producer API and prints.

Commands that need the worker side (worker, sim, stats, health, report, result --out) import it lazily,
so `genpool submit` needs only the client's dependencies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genpool.shared import contract
from genpool.shared.errors import GenpoolError
from genpool.shared.jobs import ResultRecord

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _print_record(record: ResultRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record.model_dump(mode="json"), separators=(",", ":")))
        return
    where = f"s3://{record.storage.bucket}/{record.storage.key}" if record.storage else "-"
    line = (f"{record.id}  {record.status}  {record.kind}  model={record.model_used or '-'}  "
            f"fallbacks={record.fallbacks_used}  attempts={record.attempts}  {record.duration_s:.2f}s  {where}")
    if record.error:
        line += f"\n  error: {record.error.type}: {record.error.message}"
    print(line)


def _request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"kind": args.kind}
    if args.kind == "chat":
        if args.conversation_id:
            request.update(conversation_id=args.conversation_id, message=args.prompt)
        else:
            request["messages"] = [{"role": "user", "text": args.prompt}]
    else:
        request["prompt"] = args.prompt
    if args.kind == "json":
        request["json_schema"] = _load_schema(args.schema)
    if args.kind == "image":
        request["aspect_ratio"] = args.aspect_ratio
        if args.preset:
            request["preset"] = args.preset
    for name in ("model", "system_instruction"):
        if getattr(args, name):
            request[name] = getattr(args, name)
    return request


def _load_schema(raw: str | None) -> Any:
    if not raw:
        return {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    path = Path(raw)
    text = path.read_text() if path.is_file() else raw
    try:
        return json.loads(text)
    except ValueError as exc:
        raise GenpoolError(f"--schema is neither a JSON file nor JSON text: {exc}") from None


def _pool() -> Any:
    from genpool.producer.client import GenPool

    return GenPool.from_env()


def cmd_submit(args: argparse.Namespace) -> int:
    pool = _pool()
    handle = pool.submit(_request_from_args(args), priority=args.priority, idempotency_key=args.idempotency_key)
    if not args.wait:
        print(json.dumps({"id": handle.id, "existing": handle.existing}) if args.json else handle.id)
        return EXIT_OK
    record = handle.wait(timeout_s=args.timeout)
    _print_record(record, args.json)
    return EXIT_OK if record.status == "finished" else EXIT_FAILED


def cmd_submit_file(args: argparse.Namespace) -> int:
    from genpool.cli.batch import submit_file

    return submit_file(_pool(), Path(args.file), priority=args.priority, wait=args.wait, as_json=args.json,
                       timeout_s=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    handle = _pool().handle(args.job_id)
    status = handle.status()
    print(json.dumps({"id": args.job_id, "status": status}) if args.json else status)
    return EXIT_OK if status != "unknown" else EXIT_FAILED


def cmd_result(args: argparse.Namespace) -> int:
    pool = _pool()
    record = pool.handle(args.job_id).result()
    if record is None:
        print(f"job {args.job_id} has no result yet (status: {pool.handle(args.job_id).status()})", file=sys.stderr)
        return EXIT_FAILED
    if args.out:
        from genpool.shared.storage import S3Store

        if record.storage is None:
            print("the job has no stored output", file=sys.stderr)
            return EXIT_FAILED
        store = S3Store.from_settings(pool.settings)
        body = store.client.get_object(Bucket=record.storage.bucket, Key=record.storage.key)["Body"].read()
        Path(args.out).write_bytes(body)
    _print_record(record, args.json)
    return EXIT_OK if record.status == "finished" else EXIT_FAILED


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpool", description="Gemini generation jobs on a worker pool.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", help="submit one job")
    p.add_argument("--kind", choices=contract.JOB_KINDS, default="text")
    p.add_argument("--prompt", required=True)
    p.add_argument("--model")
    p.add_argument("--system-instruction")
    p.add_argument("--schema", help="JSON schema (file or JSON text) for --kind json")
    p.add_argument("--aspect-ratio", choices=contract.ASPECT_RATIOS, default="1:1")
    p.add_argument("--preset", choices=sorted(contract.PRESETS))
    p.add_argument("--conversation-id", help="for --kind chat: keep the history in Redis under this id")
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
    try:
        if argv and argv[0] in DELEGATED:
            return _delegate(DELEGATED[argv[0]][0], argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except GenpoolError as exc:
        print(f"genpool: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.kind in ("invalid_request", "config") else EXIT_FAILED
    except TimeoutError as exc:
        print(f"genpool: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
