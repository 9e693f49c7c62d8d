"""The producer client: validate requests, enqueue them, follow them (rq + redis + pydantic only; the command
line is genpool.cli, the worker genpool.worker: neither is imported here).

    from genpool.producer import GenPool
    pool = GenPool.from_env()
    handle = pool.submit({"kind": "text", "prompt": "Write a haiku about queues"})
    record = handle.wait(timeout_s=60)
"""

from genpool.producer.client import GenPool, JobHandle

__all__ = ["GenPool", "JobHandle"]
