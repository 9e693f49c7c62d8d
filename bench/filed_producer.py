"""Submit text jobs and wait for them with whichever genpool is on PYTHONPATH (bench/filed_tree.py).

Reads the stack's environment as JSON from PRODUCER_ENV, says "ready", then for each line N on stdin
submits N jobs (``submit_many``), waits for them all (``wait_all``) and says "done <unfinished>".
Only this tree's client and redis-py are imported: it runs as well against an older genpool.
"""

import json
import os
import sys

import redis

from genpool.producer.client import GenPool
from genpool.shared.settings import Settings

PROMPT = "Write a two-line poem about job number {i} of a worker pool."


def main() -> None:
    env = json.loads(os.environ["PRODUCER_ENV"])
    pool = GenPool(redis.Redis.from_url(env["REDIS_URL"]), settings=Settings.from_env(environ=env, dotenv_path=None))
    print("ready", flush=True)
    for line in sys.stdin:
        handles = pool.submit_many([{"kind": "text", "prompt": PROMPT.format(i=i)} for i in range(int(line))])
        records = pool.wait_all(handles, timeout_s=600)
        print(f"done {sum(1 for r in records if r is None or r.status != 'finished')}", flush=True)


if __name__ == "__main__":
    main()
