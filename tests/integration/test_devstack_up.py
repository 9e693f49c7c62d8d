"""`make up` / `make down` (#14): a long-lived local stack in one command, used from another shell, stopped
with nothing left running. Runs the real Makefile targets, honcho, and every process of the Procfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from genpool.devstack import services
from genpool.devstack.stack import SIM_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    drop = ("GEMINI_", "GENPOOL_", "S3_", "AWS_", "MAKE", "MFLAGS")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "REDIS_URL"}


def _group_alive(pgid: int) -> list[str]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(stat.split(")", 1)[0])
    return alive


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_up_serves_another_shell_and_make_down_leaves_nothing(tmp_path: Path) -> None:
    ports = {name: services.free_port() for name in ("redis", "s3", "sim", "metrics", "dashboard")}
    env_file = tmp_path / "stack.env"
    env_file.write_text("\n".join([
        f"REDIS_URL=redis://127.0.0.1:{ports['redis']}/0", f"GEMINI_API_KEY={SIM_KEY}",
        f"GEMINI_BASE_URL=http://127.0.0.1:{ports['sim']}", f"S3_ENDPOINT_URL=http://127.0.0.1:{ports['s3']}",
        "S3_BUCKET=genpool-up-test", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
        f"GENPOOL_METRICS_PORT={ports['metrics']}", f"GENPOOL_DASHBOARD_PORT={ports['dashboard']}",
        "GENPOOL_WORKERS=1", "GENPOOL_CONCURRENCY=4", "GENPOOL_HEARTBEAT_S=1",
        f"GENPOOL_SPOOL_DIR={tmp_path / 'spool'}", ""]))
    env = {**_env(), "GENPOOL_ENV_FILE": str(env_file)}
    state = tmp_path / ".genpool-dev"
    try:
        up = subprocess.run(["make", "-s", "-C", str(ROOT), "up"], env=env, capture_output=True, text=True,
                            timeout=180)
        log = (state / "stack.log").read_text() if (state / "stack.log").exists() else ""
        assert up.returncode == 0, up.stdout + up.stderr + log[-3000:]
        assert "genpool stack up" in up.stdout
        pgid = int((state / "honcho.pid").read_text())

        # Another shell: only the settings file in common.
        shell = subprocess.run([sys.executable, "-m", "genpool.cli.main", "submit", "--prompt",
                                "hello from another shell", "--wait"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=90)
        assert shell.returncode == 0, shell.stderr
        assert "echo: hello from another shell" in shell.stdout
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).read()
        assert b"genpool_" in metrics
        dashboard = urllib.request.urlopen(f"http://127.0.0.1:{ports['dashboard']}/", timeout=10)
        assert dashboard.status == 200
    finally:
        down = subprocess.run(["make", "-s", "-C", str(ROOT), "down"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert down.returncode == 0, down.stderr
    assert _group_alive(pgid) == []
    assert not any(services_answer(port) for port in ports.values())
    assert not (state / "honcho.pid").exists()


def services_answer(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False
