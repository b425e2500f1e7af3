"""What one router replica holds: config, Redis, the queue client and its inbox."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from raylane.cluster.apikeys import KeyStore
from raylane.cluster.config import Config
from raylane.cluster.keys import Keys
from raylane.cluster.limits import KeyLimiter
from raylane.cluster.metrics import Recorder
from raylane.cluster.queue import JobQueue
from raylane.cluster.redis_client import connect
from raylane.router.inbox import Inbox
from raylane.router.jobs import JobRunner
from raylane.router.keeper import Keeper


@dataclass
class RouterState:
    config: Config
    redis: aioredis.Redis
    keys: Keys
    queue: JobQueue
    inbox: Inbox
    runner: JobRunner
    keeper: Keeper
    router_id: str
    started: int
    key_store: KeyStore
    metrics: Recorder

    @classmethod
    async def open(cls, config: Config, redis_url: str, prefix: str) -> RouterState:
        """Connect to Redis and start this replica's inbox reader."""
        redis = connect(redis_url)
        keys = Keys(prefix)
        queue = JobQueue(redis, keys)
        router_id = uuid.uuid4().hex[:12]
        inbox = Inbox(redis, queue, keys, router_id)
        keeper = Keeper(config, queue, inbox)
        await inbox.start()
        await keeper.start()
        metrics = Recorder(redis, keys)
        metrics.start()
        runner = JobRunner(queue, inbox, keeper.check, KeyLimiter(redis, keys), metrics)
        return cls(config, redis, keys, queue, inbox, runner, keeper, router_id,
                   int(time.time()), KeyStore(redis, keys), metrics)

    @property
    def reply_to(self) -> str:
        return self.inbox.stream

    async def close(self) -> None:
        await self.keeper.stop()
        await self.inbox.stop()
        await self.metrics.stop()
        await self.redis.aclose()
