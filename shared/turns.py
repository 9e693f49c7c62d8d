"""Turns of one conversation are serialized: a message is enqueued only once the turn before it has its answer.

The worker reads a conversation's history when its job starts and appends both turns when it ends, so two
turns running at once would each miss the other (and store two user turns in a row). Whoever sends (the
Python API, the CLI, the gateway) holds the conversation's turn (``lua/turn.lua``, key
``keys.conversation_turn``) from before it enqueues a message until that job's result record exists. A
sender that died mid-enqueue holds it ``PENDING_TTL_S`` at most; a job that is lost (its RQ hash gone, no
record) holds it no longer. The gateway keeps the same script and key (its own async wrapper).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis
from rq.job import Job

from genpool.shared import keys, luascript
from genpool.shared.errors import ConversationBusy

SCRIPT = luascript.read("genpool.shared", "lua/turn.lua")
PENDING_TTL_S = 60.0  # a sender holds the turn this long at most before its job is attached
JOB_TTL_S = 7 * 24 * 3600.0  # an attached job's turn ends with its record (or its loss), this is a backstop
POLL_S = (0.02, 0.25)  # first and longest pause between looks while another turn runs


class Turns:
    def __init__(self, connection: redis.Redis, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._script = connection.register_script(SCRIPT)
        self._sleep = sleep
        self._clock = clock

    def acquire(self, conversation_id: str, wait_s: float) -> str:
        """Hold the conversation's turn; returns the holder value to attach a job to or release.
        Raises ConversationBusy when the turn before has not ended within ``wait_s``."""
        mine = f"pending:{secrets.token_hex(8)}"
        deadline = self._clock() + wait_s
        pause = POLL_S[0]
        while True:
            holder = self._run(conversation_id, "acquire", mine, _ms(PENDING_TTL_S), keys.result(""),
                               Job.key_for(""))
            if holder is None:
                return mine
            if self._clock() + pause > deadline:
                raise ConversationBusy(f"conversation {conversation_id!r}: the message before is still being "
                                       f"answered after {wait_s:g} s; send again once it is done")
            self._sleep(pause)
            pause = min(pause * 1.5, POLL_S[1])

    def attach(self, conversation_id: str, mine: str, job_id: str) -> bool:
        """The turn now belongs to the job: it ends when the job's record exists."""
        return bool(self._run(conversation_id, "attach", mine, _ms(JOB_TTL_S), f"job:{job_id}"))

    def release(self, conversation_id: str, mine: str) -> None:
        """Give the turn back without a job (the message was not enqueued)."""
        self._run(conversation_id, "release", mine)

    def _run(self, conversation_id: str, *args: str | int) -> object:
        return self._script(keys=[keys.conversation_turn(conversation_id)], args=list(args))


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
