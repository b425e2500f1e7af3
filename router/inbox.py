"""One router replica's inbox: a Redis stream read by one task, fanned out by request id.

Workers (and the queue's Lua scripts) append events for a request to the inbox
named in its job. The replica runs exactly one blocking reader over one
connection and hands each event to the waiter registered for its request id,
so the number of Redis connections does not grow with the number of requests.

An event for a request nobody waits for any more (the client left) cancels
that job, so no worker keeps generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from raylane.cluster.keys import Keys
from raylane.cluster.queue import JobQueue
from raylane.cluster.redis_client import raise_if_cancelled

log = logging.getLogger("raylane.router")

READ_BLOCK_MS = 1000
READ_COUNT = 512


@dataclass(frozen=True)
class InboxEvent:
    job_id: str
    attempt: int
    name: str
    data: bytes
    seq: int = 0
    """Number of the event within its attempt (0 for events the queue itself writes)."""


class Inbox:
    def __init__(self, redis: aioredis.Redis, queue: JobQueue, keys: Keys, router_id: str) -> None:
        self.redis = redis
        self.queue = queue
        self.stream = keys.inbox(router_id)
        self._waiters: dict[str, asyncio.Queue[InboxEvent]] = {}
        self._last_id = "$"
        self._task: asyncio.Task[None] | None = None
        self.healthy = asyncio.Event()

    def register(self, job_id: str) -> asyncio.Queue[InboxEvent]:
        """Start collecting events for `job_id` (before it is enqueued)."""
        waiter: asyncio.Queue[InboxEvent] = asyncio.Queue()
        self._waiters[job_id] = waiter
        return waiter

    def unregister(self, job_id: str) -> None:
        self._waiters.pop(job_id, None)

    def fail_all(self, reason: str) -> None:
        """Tell every waiter its job is lost (the queue's state went with Redis)."""
        for job_id, waiter in self._waiters.items():
            waiter.put_nowait(InboxEvent(job_id, 0, "lost", reason.encode()))

    async def start(self) -> None:
        """Begin reading from the current end of the stream."""
        # Pin the starting point now so no event written after start() is missed.
        info = await self.redis.xinfo_stream(self.stream) if await self.redis.exists(
            self.stream) else None
        self._last_id = _text(info["last-generated-id"]) if info else "0-0"
        self.healthy.set()
        self._task = asyncio.create_task(self._read_forever(), name="raylane-inbox")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            raise_if_cancelled()  # a library may have swallowed the cancel
            try:
                reply: Any = await self.redis.xread(
                    {self.stream: self._last_id}, count=READ_COUNT, block=READ_BLOCK_MS
                )
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                self.healthy.clear()
                log.warning("inbox read failed (%s); retrying in %.2f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self.healthy.set()
            backoff = 0.05
            for _, entries in reply:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    await self._dispatch(fields)
            if reply:
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.xtrim(self.stream, minid=self._last_id, approximate=True)

    async def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        event = InboxEvent(
            job_id=_text(fields[b"rid"]),
            attempt=int(fields.get(b"att", b"0")),
            name=_text(fields[b"ev"]),
            data=fields.get(b"data", b""),
            seq=int(fields.get(b"seq", b"0")),
        )
        waiter = self._waiters.get(event.job_id)
        if waiter is not None:
            waiter.put_nowait(event)
        elif event.name in ("started", "delta"):
            # Nobody waits for this job any more: stop the worker.
            with contextlib.suppress(RedisError, OSError):
                await self.queue.cancel(event.job_id)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
