"""A worker pool as a Ray Serve deployment: each replica loads an engine and pulls jobs.

Replicas receive no requests through Serve; Serve gives them placement,
resources, restarts on failure and health checks, and raylane's queue gives
them work.
"""

from __future__ import annotations

import os
import socket
import uuid

from ray import serve

from raylane.cluster import logs
from raylane.cluster.config import ModelConfig, PoolConfig
from raylane.cluster.errors import EngineError
from raylane.cluster.keys import Keys
from raylane.cluster.queue import JobQueue
from raylane.cluster.redis_client import connect
from raylane.workers.engines import build_engine
from raylane.workers.pull import PullLoop


@serve.deployment(max_ongoing_requests=4)
class Worker:
    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self, model: ModelConfig, pool: PoolConfig, pool_name: str, redis_url: str, prefix: str
    ) -> None:
        logs.configure()
        self.engine = build_engine(pool)
        await self.engine.start()
        self.redis = connect(redis_url)
        worker_id = f"{pool_name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.drain_s = pool.drain_s
        self.loop = PullLoop(JobQueue(self.redis, Keys(prefix)), self.engine, model, pool,
                             pool_name, worker_id)
        self.loop.start()

    async def check_health(self) -> None:
        if not self.loop.alive:
            raise EngineError("the pull loop has stopped")
        await self.engine.health()

    async def stats(self) -> dict:
        return {"worker": self.loop.worker_id, "running": len(self.loop.running)}

    async def __del__(self) -> None:
        await self.loop.stop(self.drain_s)
        await self.engine.close()
        await self.redis.aclose()
