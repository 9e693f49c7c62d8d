"""``genpool api``: the gateway on uvicorn.

    genpool api [--host 127.0.0.1] [--port 8000] [--workers 1] [--log-level info]

Everything a gateway process keeps is in Redis (tokens, limits, turns, events), so several processes or
machines can serve behind one load balancer.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Sequence

from genpool.shared.errors import ConfigError


def raise_open_files_limit() -> int:
    """Every WebSocket is a file descriptor: use the hard limit, not the (often 1024) soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpool api", description="the HTTP and WebSocket gateway")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    import uvicorn

    from genpool.gateway.app import create_app
    from genpool.gateway.settings import ApiSettings
    from genpool.shared.settings import Settings

    try:
        settings, api = Settings.from_env(), ApiSettings.from_env()
    except ConfigError as exc:
        print(f"genpool api: {exc}", file=sys.stderr)
        return 2
    raise_open_files_limit()
    options = {"host": args.host, "port": args.port, "log_level": args.log_level, "ws_ping_interval": 20.0,
               "ws_max_size": 4 * api.max_message_bytes, "timeout_graceful_shutdown": 5, "lifespan": "on"}
    if args.workers > 1:  # each process builds its own app from the environment
        uvicorn.run("genpool.gateway.app:create_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(create_app(settings, api), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
