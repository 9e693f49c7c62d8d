"""One reader for every job stream a gateway process follows.

A thousand WebSockets waiting for answers must not hold a thousand blocked Redis connections. The hub's
task runs one ``XREAD BLOCK`` over all the streams anyone follows and hands each entry to the
subscriptions of its stream. A new subscription is read from its own start position (``XRANGE``) by the
same task, then joins the shared read, so no entry is missed or delivered twice. When a subscription
arrives while the read is blocked, ``CLIENT UNBLOCK`` wakes it (so a follower does not wait for the block
to time out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeAlias, cast

import redis.asyncio as aredis

from genpool.shared import keys
from genpool.shared.events import JobEvent, parse_entry

log = logging.getLogger("genpool.gateway.hub")
Entry: TypeAlias = tuple[bytes, dict[bytes, bytes]]  # one stream entry as redis-py returns it
Entries: TypeAlias = tuple[bytes, list[Entry]]  # one stream's entries in an XREAD reply
BLOCK_MS = 2_000
COUNT = 512  # entries per stream per read
RETRY_S = 0.5  # pause after a failed read (Redis restarting)


def stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms or 0), int(seq or 0)


def format_id(position: tuple[int, int]) -> str:
    return f"{position[0]}-{position[1]}"


class Subscription:
    """The events of one job from ``after`` on, in order (an async queue fed by the hub)."""

    def __init__(self, hub: StreamHub, job_id: str, after: str) -> None:
        self.key = keys.job_events(job_id)
        self.cursor = stream_id(after)
        self._hub = hub
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.closed = False

    def deliver(self, event: JobEvent) -> None:
        position = stream_id(event.id)
        if position > self.cursor and not self.closed:
            self.cursor = position
            self._queue.put_nowait(event)

    async def next(self, timeout_s: float) -> JobEvent | None:
        """The next event, or None after ``timeout_s`` of silence."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.closed = True
        self._hub.drop(self)


class StreamHub:
    def __init__(self, connect: Callable[[], aredis.Redis], block_ms: int = BLOCK_MS) -> None:
        """``connect`` makes a single-connection client (CLIENT UNBLOCK names the reader's connection)."""
        self._connect = connect
        self._block_ms = block_ms
        self._subs: dict[str, set[Subscription]] = {}
        self._joining: list[Subscription] = []
        self._wake = asyncio.Event()
        self._blocked = False
        self._task: asyncio.Task[None] | None = None
        self._reader: aredis.Redis | None = None
        self._control: aredis.Redis | None = None
        self._reader_id = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def following(self) -> int:
        return sum(len(s) for s in self._subs.values()) + len(self._joining)

    async def start(self) -> None:
        self._reader = self._connect()
        self._control = self._connect()
        self._task = asyncio.create_task(self._run(), name="genpool-stream-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for conn in (self._reader, self._control):
            if conn is not None:
                await conn.aclose()

    async def subscribe(self, job_id: str, after: str = "0-0") -> Subscription:
        sub = Subscription(self, job_id, after)
        self._joining.append(sub)
        self._wake.set()
        await self._interrupt()
        return sub

    def drop(self, sub: Subscription) -> None:
        if sub in self._joining:
            self._joining.remove(sub)
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    async def _interrupt(self) -> None:
        """Wake a blocked read so it includes the new stream. The read may be on its way to Redis (UNBLOCK
        finds nothing blocked): try again briefly until it is blocked or has taken the newcomers."""
        if self._control is None or not self._reader_id:
            return
        for _ in range(20):
            if not self._blocked or not self._joining:
                return
            try:
                if await self._control.client_unblock(self._reader_id):
                    return
            except Exception as exc:  # noqa: BLE001 - the read times out by itself anyway
                log.debug("client unblock failed: %s", exc)
                return
            await asyncio.sleep(0.001)

    async def _run(self) -> None:
        while True:
            try:
                await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep following; Redis may be restarting
                log.warning("stream hub read failed (%s); retrying", exc)
                self._reader_id = 0
                await asyncio.sleep(RETRY_S)

    async def _cycle(self) -> None:
        assert self._reader is not None
        if not self._reader_id:
            self._reader_id = int(await self._reader.client_id())
        await self._join()
        if not self._subs:
            self._wake.clear()
            if not self._joining:
                await self._wake.wait()
            return
        positions = {key: format_id(min(s.cursor for s in subs)) for key, subs in self._subs.items()}
        self._blocked = True
        try:
            reply = cast(list[Entries], await self._reader.xread(positions, count=COUNT,  # type: ignore[arg-type]
                                                                 block=self._block_ms) or [])
        finally:
            self._blocked = False
        for key, entries in reply:
            name = key.decode() if isinstance(key, bytes) else key
            for entry_id, fields in entries:
                event = parse_entry(entry_id, fields)
                for sub in list(self._subs.get(name, ())):
                    sub.deliver(event)

    async def _join(self) -> None:
        """Newcomers: their backlog from their own start position, then they share the read."""
        assert self._reader is not None
        while self._joining:
            sub = self._joining.pop(0)
            start = "(" + format_id(sub.cursor)
            backlog = cast(list[Entry], await self._reader.xrange(sub.key, min=start, max="+"))
            for entry_id, fields in backlog:
                sub.deliver(parse_entry(entry_id, fields))
            if not sub.closed:  # it may have been closed while its backlog was read
                self._subs.setdefault(sub.key, set()).add(sub)
