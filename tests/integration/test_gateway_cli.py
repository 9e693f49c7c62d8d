"""The commands: ``genpool tokens create|list|revoke`` and ``genpool api --port`` as a real process (the
Procfile's ``api`` line, without the Gemini key), answering a job end to end over HTTP and a chat over
WebSocket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx2
import pytest

from genpool.devstack.services import free_port
from genpool.gateway.tokens import digest
from genpool.shared import keys
from tests.conftest import Stack
from tests.integration.gatewaykit import Api, turn

pytestmark = pytest.mark.integration


def genpool(stack: Stack, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    return subprocess.run([sys.executable, "-m", "genpool.cli.main", *argv], env=env, capture_output=True,
                          text=True, timeout=120, cwd=stack.workdir)


def test_tokens_create_list_and_revoke(stack: Stack) -> None:
    made = genpool(stack, "tokens", "create", "team-a", "--rpm", "30", "--usd-per-day", "2.5")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("gpk_") and stack.redis.hexists(keys.api_tokens(), digest(token))
    listed = json.loads(genpool(stack, "tokens", "list", "--json").stdout)
    assert [(t["name"], t["rpm"], t["usd_per_day"]) for t in listed] == [("team-a", 30, 2.5)]
    assert token not in genpool(stack, "tokens", "list").stdout
    taken = genpool(stack, "tokens", "create", "team-a")
    assert taken.returncode == 2 and "exists" in taken.stderr and len(taken.stderr.strip().splitlines()) == 1
    bad = genpool(stack, "tokens", "create", "Team A!")
    assert bad.returncode == 2 and "name:" in bad.stderr
    assert genpool(stack, "tokens", "revoke", "team-a").returncode == 0
    assert genpool(stack, "tokens", "revoke", "team-a").returncode == 1
    assert stack.redis.hlen(keys.api_tokens()) == 0


def test_genpool_api_serves_jobs_and_chat_as_its_own_process(stack: Stack) -> None:
    stack.workers.start(count=1, concurrency=4)
    token = genpool(stack, "tokens", "create", "proc").stdout.strip()
    port = free_port()
    exe = shutil.which("genpool", path=os.path.dirname(sys.executable)) or "genpool"
    log = open(stack.workdir / "api.log", "wb")  # noqa: SIM115 - handed to the child
    env = {k: v for k, v in {**os.environ, **stack.env}.items() if k != "GEMINI_API_KEY"}  # workers only
    proc = subprocess.Popen([exe, "api", "--port", str(port), "--log-level", "warning"], cwd=stack.workdir,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (stack.workdir / "api.log").read_text()
            time.sleep(0.1)
        api = Api(url, token)
        job_id = api.submit({"kind": "text", "prompt": "from another process"}).json()["id"]
        assert api.wait(job_id)["status"] == "finished"
        with api.socket("proc-chat") as ws:
            assert turn(ws, "hello")[-2]["type"] == "message"
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn shuts down cleanly, then re-raises the signal it caught
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        log.close()
    assert "Traceback" not in (stack.workdir / "api.log").read_text()


def test_genpool_api_refuses_a_bad_setting_in_one_line(stack: Stack) -> None:
    env = {**os.environ, **stack.env, "GENPOOL_API_RPM": "lots"}
    done = subprocess.run([sys.executable, "-m", "genpool.cli.main", "api", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=stack.workdir)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "genpool api: GENPOOL_API_RPM='lots': Input should be a valid integer, unable to parse string as an integer"]
