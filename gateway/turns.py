"""Turns of one conversation are serialized: a message waits until the turn before it has its answer.

The worker reads a conversation's history when its job starts and appends both turns when it ends, so two
turns running at once would each miss the other. The gateway therefore holds the conversation's turn
(the script of genpool.shared.turns, which every sender uses) from before it enqueues a message until that
job's result record exists, across all gateway processes; the producer hands the turn to the job. The hold expires after twice the job deadline, so a gateway that died mid-enqueue
cannot block a conversation for long.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import redis.asyncio as aredis
from rq.job import Job

from genpool.gateway.errors import Conflict
from genpool.shared import keys
from genpool.shared.turns import SCRIPT

POLL_S = (0.02, 0.25)  # first and longest pause between looks while another turn runs


class Turns:
    def __init__(self, connection: aredis.Redis, ttl_s: float) -> None:
        self._script = connection.register_script(SCRIPT)
        self._redis = connection
        self._ttl_ms = int(ttl_s * 1000)

    async def acquire(self, conversation_id: str, wait_s: float) -> str:
        """Hold the conversation's turn; returns the holder value to attach a job to or release.
        Raises Conflict when the turn before has not ended within ``wait_s``."""
        mine = f"pending:{secrets.token_hex(8)}"
        deadline = time.monotonic() + wait_s
        pause = POLL_S[0]
        while True:
            holder = await self._script(keys=[keys.conversation_turn(conversation_id)],
                                        args=["acquire", mine, self._ttl_ms, keys.result(""),
                                              Job.key_for("")])
            if holder is None:
                return mine
            if time.monotonic() + pause > deadline:
                raise Conflict(f"another message of this conversation is still being answered after {wait_s:g} s; "
                               "send again when it is done", retry_after_s=max(1.0, wait_s / 4))
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_S[1])

    async def attach(self, conversation_id: str, mine: str, job_id: str) -> None:
        """The turn now belongs to the job: it ends when the job's record exists."""
        await self._script(keys=[keys.conversation_turn(conversation_id)],
                           args=["attach", mine, self._ttl_ms, f"job:{job_id}"])

    async def release(self, conversation_id: str, mine: str) -> None:
        """Give the turn back without a job (the message was not enqueued)."""
        await self._script(keys=[keys.conversation_turn(conversation_id)], args=["release", mine])

    async def current_job(self, conversation_id: str) -> str | None:
        """The job of the turn in progress, if one is (its record not written yet)."""
        holder = await self._redis.get(keys.conversation_turn(conversation_id))
        text = holder.decode() if isinstance(holder, bytes) else holder
        if not text or not text.startswith("job:"):
            return None
        job_id = text.removeprefix("job:")
        return None if await self._redis.exists(keys.result(job_id)) else job_id
