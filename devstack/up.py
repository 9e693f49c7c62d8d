"""`make up` / `make down`: a long-lived local stack from the Procfile, run by honcho in the background.

    python -m genpool.devstack.up start | stop | status

The stack is what the settings say (GENPOOL_ENV_FILE, else the nearest .env; ``start`` writes a .env for a
local stack when there is none): redis-server on REDIS_URL's port (AOF in ``.genpool-dev/``), moto's S3
server on S3_ENDPOINT_URL's port with S3_BUCKET created, the simulator on GEMINI_BASE_URL's port unless
GEMINI_API_KEY is a real key (then Google is called), GENPOOL_WORKERS workers, the metrics exporter and
rq-dashboard. ``start`` returns once every part answers; any shell reading the same settings can then run
``genpool submit --wait``. ``stop`` ends honcho's whole process group and checks that nothing is left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from genpool.devstack.stack import SIM_KEY
from genpool.shared.errors import ConfigError, GenpoolError
from genpool.shared.settings import ENV_FILE_VARIABLE, Settings, find_env_file

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ".genpool-dev"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def local_env(api_key: str | None) -> str:
    """A .env for the local stack: loopback services, the simulator unless a real key is given."""
    gemini = (f"GEMINI_API_KEY={api_key}\n" if api_key else
              f"GEMINI_API_KEY={SIM_KEY}\nGEMINI_BASE_URL=http://127.0.0.1:8765\n")
    return ("# Written by `make up` for the local stack (devstack/up.py); edit freely.\n"
            "REDIS_URL=redis://127.0.0.1:6379/0\n" + gemini +
            "S3_ENDPOINT_URL=http://127.0.0.1:9000\nS3_BUCKET=genpool-results\n"
            "AWS_ACCESS_KEY_ID=local\nAWS_SECRET_ACCESS_KEY=local\nAWS_DEFAULT_REGION=us-east-1\n"
            "GENPOOL_WORKERS=2\nGENPOOL_CONCURRENCY=16\n")


@dataclass(frozen=True)
class Plan:
    env_file: Path
    state: Path
    redis_port: int
    s3_port: int
    sim_port: int | None
    metrics_port: int
    dashboard_port: int
    workers: int

    @property
    def processes(self) -> list[str]:
        return ["redis", "s3", *(["sim"] if self.sim_port else []), "worker", "metrics", "dashboard"]

    def procfile_env(self, settings: Settings) -> dict[str, str]:
        env = {ENV_FILE_VARIABLE: str(self.env_file), "REDIS_URL": settings.redis_url,
               "GENPOOL_DEV_DIR": str(self.state), "GENPOOL_DEV_REDIS_PORT": str(self.redis_port),
               "GENPOOL_DEV_S3_PORT": str(self.s3_port), "GENPOOL_METRICS_PORT": str(self.metrics_port),
               "GENPOOL_DASHBOARD_PORT": str(self.dashboard_port), "GENPOOL_WORKERS": str(self.workers),
               "PYTHONUNBUFFERED": "1"}
        if self.sim_port:
            env["GEMINI_SIM_PORT"] = str(self.sim_port)
        return env


def _local_port(name: str, url: str | None, default: int) -> int:
    parts = urlsplit(url or "")
    if url and parts.hostname not in LOCAL_HOSTS:
        raise ConfigError(f"{name}={url!r}: `make up` runs a local stack, so it must point at 127.0.0.1")
    return parts.port or default


def plan(settings: Settings, env_file: Path) -> Plan:
    if not settings.s3_endpoint_url:
        raise ConfigError("S3_ENDPOINT_URL is empty (AWS): `make up` runs a local S3 server; set "
                          "S3_ENDPOINT_URL=http://127.0.0.1:9000")
    real_key = settings.gemini_api_key.reveal() not in ("", SIM_KEY) and not settings.gemini_base_url
    return Plan(env_file=env_file, state=env_file.parent / STATE_DIR,
                redis_port=_local_port("REDIS_URL", settings.redis_url, 6379),
                s3_port=_local_port("S3_ENDPOINT_URL", settings.s3_endpoint_url, 9000),
                sim_port=None if real_key else _local_port("GEMINI_BASE_URL", settings.gemini_base_url, 8765),
                metrics_port=settings.metrics_port, dashboard_port=settings.dashboard_port,
                workers=settings.workers)


def _settings() -> tuple[Settings, Path]:
    env_file = find_env_file(os.environ)
    if env_file is None:
        env_file = Path.cwd() / ".env"
        env_file.write_text(local_env(os.environ.get("GEMINI_API_KEY")))
        print(f"wrote {env_file} for a local stack", file=sys.stderr)
    return Settings.from_env(dotenv_path=env_file), env_file


def _pid_file(state: Path) -> Path:
    return state / "honcho.pid"


def _running(state: Path) -> int | None:
    try:
        pid = int(_pid_file(state).read_text())
        os.killpg(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start() -> int:
    settings, env_file = _settings()
    p = plan(settings, env_file)
    p.state.mkdir(parents=True, exist_ok=True)
    if _running(p.state):
        print(f"the stack is already up ({p.state}); `make down` stops it", file=sys.stderr)
        return 0
    busy = [port for port in (p.redis_port, p.s3_port, p.sim_port, p.metrics_port, p.dashboard_port)
            if port and _answers(port)]
    if busy:
        raise ConfigError(f"ports already in use on 127.0.0.1: {', '.join(map(str, busy))}; stop what "
                          "listens there or change the ports in " + str(env_file))
    procfile_env = p.state / "procfile.env"
    procfile_env.write_text("".join(f"{k}={v}\n" for k, v in p.procfile_env(settings).items()))
    log = open(p.state / "stack.log", "ab")  # noqa: SIM115 - handed to honcho
    bin_dir = str(Path(sys.executable).parent)
    proc = subprocess.Popen(
        [str(Path(bin_dir) / "honcho"), "start", "--no-colour", "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
         "-e", str(procfile_env), *p.processes],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    _pid_file(p.state).write_text(str(proc.pid))
    try:
        _wait_ready(p, settings, proc)
    except GenpoolError:
        stop_stack(p.state)
        raise
    _summary(p, settings)
    return 0


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3):
        return True
    return False


def _wait_ready(p: Plan, settings: Settings, proc: subprocess.Popen[bytes]) -> None:
    ports = [port for port in (p.redis_port, p.s3_port, p.sim_port, p.metrics_port, p.dashboard_port) if port]
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GenpoolError(f"the stack stopped while starting; see {p.state / 'stack.log'}")
        if all(_answers(port) for port in ports) and _workers(settings) >= p.workers:
            return
        time.sleep(0.5)
    raise GenpoolError(f"the stack was not up within {START_TIMEOUT_S:.0f} s; see {p.state / 'stack.log'}")


def _workers(settings: Settings) -> int:
    from rq import Worker

    from genpool.shared.redisconn import connect

    try:
        conn = connect(settings)
        try:
            return int(Worker.count(connection=conn))
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - not up yet
        return 0


def _summary(p: Plan, settings: Settings) -> None:
    gemini = f"simulator on http://127.0.0.1:{p.sim_port}" if p.sim_port else "Google (GEMINI_API_KEY)"
    print("\n".join([
        f"genpool stack up (settings: {p.env_file})",
        f"  redis      redis://127.0.0.1:{p.redis_port} (data in {p.state})",
        f"  S3         http://127.0.0.1:{p.s3_port}, bucket {settings.s3_bucket} (in memory)",
        f"  Gemini     {gemini}",
        f"  workers    {p.workers} processes x {settings.concurrency} jobs",
        f"  metrics    http://127.0.0.1:{p.metrics_port}/metrics",
        f"  dashboard  http://127.0.0.1:{p.dashboard_port}",
        f"  logs       {p.state / 'stack.log'}",
        "From another shell in this directory (or with GENPOOL_ENV_FILE set):",
        "  genpool submit --prompt 'Write a haiku about queues' --wait",
        "`make down` stops it.",
    ]))


def stop_stack(state: Path) -> bool:
    """SIGTERM honcho (it stops every process it started), then make sure its whole group is gone."""
    pid = _running(state)
    if pid is None:
        _pid_file(state).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    _pid_file(state).unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies, exited but not reaped, do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop() -> int:
    env_file = find_env_file(os.environ) or Path.cwd() / ".env"
    state = env_file.parent / STATE_DIR
    print("genpool stack stopped" if stop_stack(state) else "the stack was not running", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genpool.devstack.up", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            return start()
        if args.action == "stop":
            return stop()
        env_file = find_env_file(os.environ) or Path.cwd() / ".env"
        up = _running(env_file.parent / STATE_DIR) is not None
        print("up" if up else "down")
        return 0 if up else 1
    except GenpoolError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
