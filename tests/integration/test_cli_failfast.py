"""The command line as a user meets it (#14): one line per failure and a documented exit code, a .env that
serves every command, the conveniences (--prompt-file, stdin, generation flags, --wait prints the answer),
and a whole run's worker log with exactly one INFO line per attempt. The real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
NO_AWS_FILES = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
                "AWS_EC2_METADATA_DISABLED": "true"}


def genpool(env: dict[str, str], *args: str, cwd: Path | None = None, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GENPOOL_", "S3_", "AWS_"))}
    base.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "genpool.cli.main", *args], env={**base, **NO_AWS_FILES, **env},
                          capture_output=True, text=True, timeout=90, cwd=cwd, input=stdin)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def test_credentials_only_in_dotenv_serve_health_and_result_out(stack: Stack, tmp_path: Path) -> None:
    stack.workers.start(1, concurrency=2)
    record = stack.pool.submit({"kind": "text", "prompt": "kept in S3"}).wait(timeout_s=60)
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    write_env_file(project / ".env", stack.env)  # the only place the S3 credentials are

    health = genpool({}, "health", cwd=project / "sub")  # found from a subdirectory
    assert health.returncode == 0, health.stdout + health.stderr
    out = genpool({}, "result", record.id, "--out", str(tmp_path / "answer.txt"), cwd=project / "sub")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "answer.txt").read_text().startswith("[gemini-")

    explicit = write_env_file(tmp_path / "elsewhere.env", stack.env)
    again = genpool({"GENPOOL_ENV_FILE": str(explicit)}, "result", record.id, "--out", str(tmp_path / "b.txt"),
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_health_with_no_worker_alive_is_unhealthy(stack: Stack) -> None:
    out = genpool(stack.env, "health")
    assert out.returncode == 1
    assert "FAIL workers: no worker alive" in out.stdout


def test_a_jsonl_with_a_bad_byte_reports_that_line_and_submits_the_good_ones(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b'{"kind": "text", "prompt": "one"}\n{"kind": "text", "prompt": "t\xffo"}\n'
                     b'{"kind": "text", "prompt": "   "}\n{"kind": "text", "prompt": "four"}\n')
    out = genpool(stack.env, "submit-file", str(path), "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.search(r"jobs.jsonl:2: skipped: not UTF-8", out.stderr)
    assert re.search(r"jobs.jsonl:3: skipped: .*only whitespace", out.stderr)
    submitted = [json.loads(line) for line in out.stdout.splitlines()]
    assert [s["line"] for s in submitted] == [1, 4]
    assert stack.redis.llen("rq:queue:genpool-default") == 2


@pytest.mark.parametrize(("args", "code", "expected"), [
    (("submit", "--prompt", "x", "--schema", "{}"), 2, "--schema applies to --kind json only"),
    (("submit", "--prompt", "x", "--aspect-ratio", "1:1"), 2, "--aspect-ratio applies to --kind image only"),
    (("submit", "--prompt", "x", "--conversation-id", "c1"), 2, "--conversation-id applies to --kind chat only"),
    (("submit", "--kind", "image", "--prompt", "x", "--preset", "video_background", "--aspect-ratio", "1:1"), 2,
     "preset video_background is 16:9"),
    (("submit", "--prompt", "  "), 2, "only whitespace"),
    (("submit", "--prompt-file", "/nonexistent/prompt.txt"), 2, "--prompt-file /nonexistent/prompt.txt"),
    (("submit",), 2, "one of the arguments --prompt --prompt-file is required"),
    (("result", "0" * 32), 1, "no such job"),
    (("status", "0" * 32), 1, "no such job"),
])
def test_bad_input_is_one_line_and_exit_code(stack: Stack, args: tuple[str, ...], code: int, expected: str) -> None:
    out = genpool(stack.env, *args)
    assert out.returncode == code, out.stderr
    assert expected in one_line(out)


def test_a_malformed_redis_url_is_one_line_exit_2() -> None:
    out = genpool({"REDIS_URL": "notaurl"}, "submit", "--prompt", "x")
    assert out.returncode == 2
    assert one_line(out).startswith("genpool: REDIS_URL='notaurl' is not a Redis URL")


def test_result_out_failures_are_one_line(stack: Stack, tmp_path: Path) -> None:
    stack.workers.start(1, concurrency=2)
    record = stack.pool.submit({"kind": "text", "prompt": "p"}).wait(timeout_s=60)
    missing_dir = genpool(stack.env, "result", record.id, "--out", str(tmp_path / "no" / "such" / "dir.txt"))
    assert missing_dir.returncode == 2 and "cannot write" in one_line(missing_dir)
    no_credentials = {k: v for k, v in stack.env.items() if not k.startswith("AWS_")}
    refused = genpool(no_credentials, "result", record.id, "--out", str(tmp_path / "a.txt"))
    assert refused.returncode == 2 and "no S3 credentials" in one_line(refused)
    s3_down = genpool({**stack.env, "S3_ENDPOINT_URL": "http://127.0.0.1:9", "GENPOOL_S3_TIMEOUT_S": "1"},
                      "result", record.id, "--out", str(tmp_path / "b.txt"))
    assert s3_down.returncode == 1 and "object store unreachable" in one_line(s3_down)
    debug = genpool(stack.env, "--debug", "result", record.id, "--out", str(tmp_path / "no" / "dir.txt"))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_stats_json_counts_are_integers(stack: Stack) -> None:
    stack.workers.start(1, concurrency=4)
    handles = stack.pool.submit_many([{"kind": "text", "prompt": f"count {i}"} for i in range(3)])
    assert all(r and r.status == "finished" for r in stack.pool.wait_all(handles, timeout_s=60))
    out = genpool(stack.env, "stats", "--json")
    assert out.returncode == 0, out.stderr
    assert re.search(r'"requests": 3[,}]', out.stdout) and '"requests": 3.0' not in out.stdout
    costs = re.findall(r'"cost_usd_total": ([0-9.e-]+)', out.stdout)
    assert costs and all(len(c.replace("0.", "", 1).lstrip("0")) <= 13 for c in costs)  # no float noise


def test_submit_wait_prints_the_answer_from_a_file_stdin_and_flags(stack: Stack, tmp_path: Path) -> None:
    stack.workers.start(1, concurrency=4)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("a prompt from a file")
    from_file = genpool(stack.env, "submit", "--prompt-file", str(prompt), "--wait", "--temperature", "0.2",
                        "--max-output-tokens", "500", "--system", "be brief")
    assert from_file.returncode == 0, from_file.stderr
    assert "echo: a prompt from a file" in from_file.stdout
    from_stdin = genpool(stack.env, "submit", "--prompt", "-", "--wait", stdin="a prompt on stdin")
    assert from_stdin.returncode == 0 and "echo: a prompt on stdin" in from_stdin.stdout, from_stdin.stderr
    image = genpool(stack.env, "submit", "--kind", "image", "--prompt", "a lighthouse", "--wait",
                    "--preset", "video_background", cwd=tmp_path)
    assert image.returncode == 0, image.stderr
    saved = tmp_path / image.stdout.strip()
    assert saved.suffix == ".png" and saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    version = genpool({}, "--version")
    assert version.returncode == 0 and version.stdout.startswith("genpool ")


def test_a_whole_runs_worker_log_has_one_info_line_per_attempt(stack: Stack) -> None:
    """Every kind, a fallback, a failure and a refused job; the worker at its default level (INFO)."""
    stack.sim.models({"gemini-3.8-flash": {"retired": True}})
    stack.workers.start(1, concurrency=4)
    requests = [{"kind": "text", "prompt": f"t{i}"} for i in range(6)] + [
        {"kind": "chat", "messages": [{"role": "user", "text": "hi"}]},
        {"kind": "json", "prompt": "j", "json_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        {"kind": "image", "prompt": "a boat"},
        {"kind": "text", "prompt": "pinned", "model": "gemini-3.8-flash", "allow_fallback": False},
    ]
    handles = stack.pool.submit_many(requests)
    refused = _enqueue_foreign_job(stack)
    records = stack.pool.wait_all([*handles, stack.pool.handle(refused)], timeout_s=60)
    assert all(r is not None for r in records)
    stack.workers.stop()
    log = stack.workers.logs()
    attempts = sum(r.attempts for r in records if r)
    info = [line for line in log.splitlines() if " INFO " in line]
    attempt_lines = [line for line in info if " genpool.attempt: " in line]
    others = [line for line in info if line not in attempt_lines]
    assert len(attempt_lines) == attempts, "\n".join(info)
    startup = re.compile(r" genpool\.worker: (worker \w+: \d+ jobs in flight|limits [\w.-]+: .*\(catalog\))"
                         r"| genpool\.control: (routing|budgets) v\d+")
    assert all(startup.search(line) for line in others), "\n".join(others)  # start-up lines only
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if refused in line]) == 1  # a refusal is one line


def _enqueue_foreign_job(stack: Stack) -> str:
    from rq import Queue
    from rq.serializers import JSONSerializer

    queue = Queue("genpool-default", connection=stack.redis, serializer=JSONSerializer)
    return str(queue.enqueue("builtins.print", "not genpool's").id)
