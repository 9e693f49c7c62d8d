"""Real local services on loopback: redis-server, moto's S3 server and the Gemini simulator."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service could not be started."""


@dataclass
class Service:
    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    argv: list[str] = field(default_factory=list)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def restart(self, timeout_s: float = 10.0) -> None:
        """Stop and start again on the same port with the same arguments (same data dir)."""
        self.stop()
        self.proc = _spawn(self.argv, self.workdir, self.name)
        wait_for_port(self.port, timeout_s, self.proc, self.name)
        if self.name == "redis":
            wait_for_redis_loaded(self.port, timeout_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{name} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"{name} did not listen on 127.0.0.1:{port} within {timeout_s} s")


def wait_for_redis_loaded(port: int, timeout_s: float) -> None:
    """Until Redis answers PING with PONG: a restarted Redis listens at once but answers LOADING while it
    replays its AOF, which grows with everything a test session wrote before."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise ServiceError(f"redis-server on 127.0.0.1:{port} still loading its data after {timeout_s} s")


def _spawn(argv: list[str], workdir: Path, name: str) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _workdir(workdir: Path | None, name: str) -> Path:
    path = workdir or Path(tempfile.mkdtemp(prefix=f"genpool-{name}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ServiceError(
            "redis-server is not installed: run `apt-get install -y redis-server` (or `make deps`), "
            "or set REDIS_URL to a running Redis"
        )
    return found


def start_redis(port: int | None = None, workdir: Path | None = None, appendonly: bool = True) -> Service:
    """A real redis-server with AOF persistence and noeviction, as genpool recommends."""
    port = port or free_port()
    path = _workdir(workdir, "redis")
    argv = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(path),
        "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
        "--save", "", "--maxmemory-policy", "noeviction", "--protected-mode", "yes",
    ]
    proc = _spawn(argv, path, "redis")
    wait_for_port(port, 10, proc, "redis-server")
    return Service("redis", f"redis://127.0.0.1:{port}/0", port, proc, path, argv)


def start_s3(port: int | None = None, workdir: Path | None = None) -> Service:
    """moto's S3-compatible server in its own process."""
    port = port or free_port()
    path = _workdir(workdir, "s3")
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = _spawn(argv, path, "s3")
    wait_for_port(port, 20, proc, "S3 server (moto)")
    return Service("s3", f"http://127.0.0.1:{port}", port, proc, path, argv)


def start_sim(config_path: Path | None = None, port: int | None = None, workdir: Path | None = None,
              env: dict[str, str] | None = None) -> Service:
    """The offline Gemini simulator (`python -m genpool.sim`) in its own process."""
    port = port or free_port()
    path = _workdir(workdir, "sim")
    argv = [sys.executable, "-m", "genpool.sim", "--port", str(port), "--host", "127.0.0.1",
            "--request-log", str(path / "requests.jsonl")]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    child_env = {**os.environ, **(env or {})}
    log = open(path / "sim.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(argv, cwd=path, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                            start_new_session=True)
    wait_for_port(port, 20, proc, "Gemini simulator")
    return Service("sim", f"http://127.0.0.1:{port}", port, proc, path, argv)
