"""`python -m genpool.sim` / `genpool sim`: parse arguments, load the config, serve until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from genpool.sim.config import load_config
from genpool.sim.errors import ConfigError
from genpool.sim.reqlog import RequestLog
from genpool.sim.server import SimServer
from genpool.sim.state import Simulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpool sim", description="Offline Gemini Developer API simulator.")
    parser.add_argument("--config", type=Path, help="TOML or JSON config (default: built-in models, no quotas)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one")
    parser.add_argument("--request-log", type=Path, help="append one JSON line per generate call here")
    return parser


def _install_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; the caller stops us otherwise
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def serve(server: SimServer, stop: threading.Event) -> None:
    """Serve on a background thread until `stop` is set, then shut down and flush."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="sim-accept",
                              daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.sim.log.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"genpool sim: {exc}", file=sys.stderr)
        return 2
    sim = Simulator(config, RequestLog(args.request_log))
    try:
        server = SimServer((args.host, args.port), sim)
    except OSError as exc:
        print(f"genpool sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        sim.log.close()
        return 1
    stop = threading.Event()
    _install_signals(stop)
    host, port = server.server_address[:2]
    print(f"genpool sim listening on http://{host}:{port}", flush=True)
    serve(server, stop)
    return 0
