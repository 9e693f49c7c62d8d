"""A producer process that keeps a backlog on the default queue, through genpool's own producer API.

    python -m bench.feeder --backlog N [--batch B]   (env: the stack's REDIS_URL etc.; stops on SIGTERM)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

PROMPT = "Summarise in two lines what a worker pool does with job {i}."


def main(argv: list[str] | None = None) -> int:
    from genpool.producer.client import GenPool
    from genpool.shared.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=400, help="keep at least this many jobs queued")
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pool = GenPool.from_env(Settings.from_env(dotenv_path=None))
    queue = pool._queue("default")  # noqa: SLF001 - a benchmark peeking at the depth
    sent = 0
    while not stop.is_set():
        if queue.count < args.backlog:
            pool.submit_many([{"kind": "text", "prompt": PROMPT.format(i=sent + i)} for i in range(args.batch)])
            sent += args.batch
        else:
            stop.wait(0.1)
    print(sent, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
