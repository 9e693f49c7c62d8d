"""`genpool submit / status / result`: a request from flags, the answer printed, one line per failure."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from genpool.shared import contract
from genpool.shared.errors import EXIT_FAILED, EXIT_OK, GenpoolError, NoSuchJob, ValidationError
from genpool.shared.jobs import ResultRecord

DEFAULT_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
#: Flags that mean something for one kind only: given with another kind they are an error, not ignored.
KIND_FLAGS = {"schema": ("json", "--schema"), "aspect_ratio": ("image", "--aspect-ratio"),
              "preset": ("image", "--preset"), "conversation_id": ("chat", "--conversation-id")}


class UsageError(ValidationError):
    """The command line itself is wrong (exit 2)."""


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=contract.JOB_KINDS, default="text")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the prompt; '-' reads it from standard input")
    source.add_argument("--prompt-file", help="read the prompt from this file ('-': standard input)")
    p.add_argument("--model")
    p.add_argument("--system", "--system-instruction", dest="system_instruction", help="system instruction")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-output-tokens", type=int)
    p.add_argument("--schema", help="JSON schema (file or JSON text) for --kind json")
    p.add_argument("--aspect-ratio", choices=contract.ASPECT_RATIOS, help="for --kind image (default 1:1)")
    p.add_argument("--preset", choices=sorted(contract.PRESETS), help="for --kind image")
    p.add_argument("--conversation-id", help="for --kind chat: keep the history in Redis under this id")
    p.add_argument("--out", help="with --wait: save the answer here (images default to ./<job id>.png)")


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    for name, (kind, flag) in KIND_FLAGS.items():
        if getattr(args, name) is not None and args.kind != kind:
            raise UsageError(f"{flag} applies to --kind {kind} only (this is --kind {args.kind})")
    request: dict[str, Any] = {"kind": args.kind, **_content(args, read_prompt(args.prompt, args.prompt_file))}
    optional = {"model": args.model, "system_instruction": args.system_instruction,
                "aspect_ratio": args.aspect_ratio, "preset": args.preset}
    request.update({k: v for k, v in optional.items() if v is not None})
    generation = {k: getattr(args, k) for k in ("temperature", "max_output_tokens") if getattr(args, k) is not None}
    if generation:
        request["generation"] = generation
    return request


def _content(args: argparse.Namespace, prompt: str) -> dict[str, Any]:
    if args.kind == "chat" and args.conversation_id:
        return {"conversation_id": args.conversation_id, "message": prompt}
    if args.kind == "chat":
        return {"messages": [{"role": "user", "text": prompt}]}
    if args.kind == "json":
        return {"prompt": prompt, "json_schema": load_schema(args.schema)}
    return {"prompt": prompt}


def read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    if prompt is not None and prompt != "-":
        return prompt
    if prompt == "-" or prompt_file == "-":
        return sys.stdin.read()
    return read_text(Path(str(prompt_file)), "--prompt-file")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def load_schema(raw: str | None) -> Any:
    if not raw:
        return DEFAULT_SCHEMA
    path = Path(raw)
    text = read_text(path, "--schema") if path.is_file() else raw
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--schema is neither a JSON file nor JSON text: {exc}") from None


def summary(record: ResultRecord) -> str:
    where = f"s3://{record.storage.bucket}/{record.storage.key}" if record.storage else "-"
    line = (f"{record.id}  {record.status}  {record.kind}  model={record.model_used or '-'}  "
            f"fallbacks={record.fallbacks_used}  attempts={record.attempts}  {record.duration_s:.2f}s  {where}")
    if record.error:
        line += f"  error: {record.error.type}: {record.error.message}"
    return line


def print_record(record: ResultRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record.model_dump(mode="json"), separators=(",", ":")))
    else:
        print(summary(record))


def read_output(settings: Any, record: ResultRecord) -> bytes:
    """The stored answer's bytes (boto3 is needed: the cli and worker extras bring it)."""
    if record.storage is None:
        raise GenpoolError(f"job {record.id} has no stored output (status: {record.status})")
    try:
        from genpool.shared.storage import S3Store
        store = S3Store.from_settings(settings)
    except ImportError:
        raise GenpoolError("reading the answer from S3 needs boto3: pip install 'genpool[cli]'") from None
    return store.read(record.storage.bucket, record.storage.key)


def write_output(path: Path, body: bytes) -> None:
    try:
        path.write_bytes(body)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def show_answer(settings: Any, record: ResultRecord, out: str | None) -> None:
    """The answer on stdout (text, JSON), or where it was saved (images, --out); the record's line on stderr."""
    print(summary(record), file=sys.stderr)
    body = read_output(settings, record)
    if out is None and record.kind == "image":
        out = f"{record.id}.png"
    if out is not None:
        write_output(Path(out), body)
        print(out)
        return
    text = body.decode("utf-8", errors="replace")
    print(text if text.endswith("\n") else text + "\n", end="")


def cmd_submit(pool: Any, args: argparse.Namespace) -> int:
    request = request_from_args(args)
    handle = pool.submit(request, priority=args.priority, idempotency_key=args.idempotency_key, notify=args.wait)
    if not args.wait:
        print(json.dumps({"id": handle.id, "existing": handle.existing}) if args.json else handle.id)
        return EXIT_OK
    record = handle.wait(timeout_s=args.timeout)
    if args.json:
        print_record(record, as_json=True)
    elif record.status == "finished":
        show_answer(pool.settings, record, args.out)
    else:
        print(f"genpool: {summary(record)}", file=sys.stderr)
    return EXIT_OK if record.status == "finished" else EXIT_FAILED


def cmd_status(pool: Any, args: argparse.Namespace) -> int:
    status = pool.handle(args.job_id).status()
    if status == "unknown":
        raise NoSuchJob(f"no such job: {args.job_id}")
    print(json.dumps({"id": args.job_id, "status": status}) if args.json else status)
    return EXIT_OK


def cmd_result(pool: Any, args: argparse.Namespace) -> int:
    handle = pool.handle(args.job_id)
    record = handle.result()
    if record is None:
        status = handle.status()
        if status == "unknown":
            raise NoSuchJob(f"no such job: {args.job_id} (never submitted, or its record expired)")
        print(f"genpool: job {args.job_id} has no result yet (status: {status})", file=sys.stderr)
        return EXIT_FAILED
    if args.out:
        write_output(Path(args.out), read_output(pool.settings, record))
    print_record(record, args.json)
    return EXIT_OK if record.status == "finished" else EXIT_FAILED
