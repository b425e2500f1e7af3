"""Housekeeping of one router replica, twice a second.

- Marks the replica alive (`<inbox>:alive`, a few seconds' TTL): workers stop jobs, and
  the queue drops jobs, whose router is gone, so no generation runs for nobody.
- Requeues jobs whose worker's lease lapsed, even when no worker is left to do it.
- Notices a Redis restart (a new server run id: the queue's state is gone) and fails
  the requests this replica waits on at once, instead of letting them hang to their
  deadline.
- Knows whether Redis answers, so new requests during an outage get a quick 503, and
  whether raylane is stopping, so new requests then get a 503 while running ones finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from raylane.cluster.config import Config, pool_names
from raylane.cluster.errors import ServiceUnavailable
from raylane.cluster.queue import ALIVE_TTL_S, JobQueue
from raylane.cluster.redis_client import raise_if_cancelled
from raylane.router.inbox import Inbox

log = logging.getLogger("raylane.router")

PERIOD_S = 0.5
STALE_S = 3.0
"""Without a successful round for this long, the replica reports Redis as down."""


class Keeper:
    def __init__(self, config: Config, queue: JobQueue, inbox: Inbox) -> None:
        self.config = config
        self.queue = queue
        self.inbox = inbox
        self.server: str | None = None
        self.last_ok = time.monotonic()
        self.last_error = ""
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.round()
        self._task = asyncio.create_task(self._forever(), name="raylane-keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.queue.redis.delete(self.queue.keys.alive(self.inbox.stream))

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def check(self) -> None:
        """Raise ServiceUnavailable while Redis has not answered for a while, or raylane
        is stopping."""
        if time.monotonic() - self.last_ok > STALE_S:
            raise ServiceUnavailable(f"The queue is unreachable: {self.last_error}")
        if self.draining:
            raise ServiceUnavailable("raylane is shutting down; retry on another instance.")

    async def _forever(self) -> None:
        while True:
            raise_if_cancelled()  # a library may have swallowed the cancel
            await asyncio.sleep(PERIOD_S)
            try:
                await self.round()
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                self.last_error = str(exc) or type(exc).__name__
                log.warning("router housekeeping failed: %s", self.last_error)

    async def round(self) -> None:
        server = await self.queue.server_id()
        if self.server is not None and server != self.server:
            log.warning("Redis restarted (run id %s -> %s): failing waiting requests",
                        self.server, server)
            self.inbox.fail_all("The queue's Redis restarted and lost this request; retry it.")
        self.server = server
        await self.queue.keep_alive(self.inbox.stream, ALIVE_TTL_S)
        self.draining = bool(await self.queue.redis.exists(self.queue.keys.draining()))
        for model in self.config.models:
            await self.queue.reap(model.name, max_attempts=model.queue.max_attempts,
                                  wake=pool_names(model))
        self.last_ok = time.monotonic()
