"""`genpool submit-file`: one request per JSONL line; bad lines reported, good lines still go through."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from genpool.producer.client import GenPool, JobHandle
from genpool.shared.errors import GenpoolError
from genpool.shared.jobs import ErrorInfo, ResultRecord

BATCH = 500


def read_lines(path: Path, pool: GenPool) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """Valid requests with their line numbers, and (line, problem) for the rest.

    A line is a request object; it may carry an ``idempotency_key`` beside the request fields. The file is
    read as bytes, so a line that is not UTF-8 is one bad line, not the end of the file."""
    good: list[tuple[int, dict[str, Any]]] = []
    bad: list[tuple[int, str]] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append((number, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            if not line.strip():
                continue
            problem = _check_line(line, pool)
            if isinstance(problem, str):
                bad.append((number, problem))
            else:
                good.append((number, problem))
    return good, bad


def _check_line(line: str, pool: GenPool) -> dict[str, Any] | str:
    """The line's object when it is a valid request, else what is wrong with it."""
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            return "a line must be a JSON object"
        pool.validate(_request(data))
    except ValueError as exc:
        return f"not JSON: {exc}"
    except GenpoolError as exc:
        return str(exc)
    return data


def _request(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "idempotency_key"}


def submit_file(pool: GenPool, path: Path, *, priority: str, wait: bool, as_json: bool, timeout_s: float) -> int:
    if not path.is_file():
        print(f"genpool: no such file: {path}", file=sys.stderr)
        return 2
    good, bad = read_lines(path, pool)
    for number, problem in bad:
        print(f"{path}:{number}: skipped: {problem}", file=sys.stderr)
    handles = _submit(pool, [d for _, d in good], priority, notify=wait)
    print(f"submitted {len(handles)} jobs ({len(bad)} lines skipped)", file=sys.stderr)
    if not wait:
        for (number, _), handle in zip(good, handles, strict=True):
            print(json.dumps({"line": number, "id": handle.id}) if as_json else handle.id)
        return 1 if bad else 0
    results = _wait_with_progress(pool, handles, timeout_s)
    return _print_results(good, handles, results, as_json) or (1 if bad else 0)


def _submit(pool: GenPool, lines: list[dict[str, Any]], priority: str, notify: bool) -> list[JobHandle]:
    """Batches of BATCH requests; a message on a kept conversation goes alone, after the one before it on
    that conversation has its answer (submit waits for the turn). ``notify``: the workers announce each
    record (the wait then blocks on one read instead of polling every record)."""
    handles: list[JobHandle | None] = [None] * len(lines)
    plain = [i for i, d in enumerate(lines) if not d.get("conversation_id")]
    for start in range(0, len(plain), BATCH):
        chunk = plain[start:start + BATCH]
        got = pool.submit_many([_request(lines[i]) for i in chunk], priority=priority,
                               idempotency_keys=[lines[i].get("idempotency_key") for i in chunk], notify=notify)
        for i, handle in zip(chunk, got, strict=True):
            handles[i] = handle
    for i, data in enumerate(lines):
        if handles[i] is None:
            handles[i] = pool.submit(_request(data), priority=priority, idempotency_key=data.get("idempotency_key"),
                                     notify=notify)
    return [h for h in handles if h is not None]


def _wait_with_progress(pool: GenPool, handles: list[JobHandle], timeout_s: float) -> list[ResultRecord | None]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=not console.is_terminal) as progress:
        task = progress.add_task("jobs", total=len(handles))
        return pool.wait_all(handles, timeout_s, on_progress=lambda done: progress.update(task, completed=done))


def _print_results(good: list[tuple[int, dict[str, Any]]], handles: list[JobHandle],
                   results: list[ResultRecord | None], as_json: bool) -> int:
    failed = 0
    for (number, _), handle, record in zip(good, handles, results, strict=True):
        if record is None:
            record = ResultRecord(id=handle.id, status="failed", kind="unknown",
                                  error=ErrorInfo(type="timeout", message="not finished before --timeout"))
        failed += record.status != "finished"
        if as_json:
            print(json.dumps({"line": number, **record.model_dump(mode="json")}, separators=(",", ":")))
        else:
            model = record.model_used or "-"
            print(f"line {number}: {record.id} {record.status} {record.kind} {model}")
    return 1 if failed else 0
