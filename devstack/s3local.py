"""`python -m genpool.devstack.s3local --port P`: moto's S3 server with genpool's bucket created (make up).

Objects live in this process's memory: they are gone after `make down`, while Redis (AOF on disk) keeps
queues and records. Stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    from moto.server import ThreadedMotoServer

    from genpool.shared.settings import Settings
    from genpool.shared.storage import S3Store

    parser = argparse.ArgumentParser(prog="genpool.devstack.s3local")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    try:
        settings = Settings.from_env()
        S3Store.from_settings(settings).ensure_bucket()
        print(f"local S3 on http://127.0.0.1:{args.port}, bucket {settings.s3_bucket}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
