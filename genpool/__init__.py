"""genpool: Gemini generation jobs on RQ + Redis. The one import name of the distribution.

    from genpool import GenPool
    pool = GenPool.from_env()
    handle = pool.submit({"kind": "text", "prompt": "Write a haiku about queues"})
    record = handle.wait(timeout_s=60)

The sub-packages live in the repository's top-level folders and are installed under this name:
``genpool.shared`` (contract, settings, catalog, limiter), ``genpool.producer`` (the client),
``genpool.worker``, ``genpool.ops``, ``genpool.cli``; a development checkout also has ``genpool.sim`` and
``genpool.devstack`` (never in the wheel). See setup.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genpool.producer.client import GenPool, JobHandle

__all__ = ["GenPool", "JobHandle"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing genpool.shared.* or genpool.worker.* does not import the client first.
    if name in __all__:
        from genpool.producer import client

        return getattr(client, name)
    raise AttributeError(f"module 'genpool' has no attribute {name!r}")
