"""The Serve controller's side of per-pool autoscaling: `QueueDepthPolicy`.

Serve cloudpickles this module by value into its controller, builds one instance per
autoscaled pool from `policy_kwargs` (see `autoscale.policy_config`) and calls it every
control-loop tick. It must never block the controller's event loop nor fail it: Redis is
read in a one-shot task at most every `POLL_S`, as Ray's
`ray/serve/async_inference_autoscaling_policy.py` polls its broker, with short timeouts,
and each call decides from the last reading. With no reading (Redis down), it keeps the
current target. Keep it free of msgspec Structs: a Struct class pickled by value breaks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from raylane.cluster.autoscale import (
    Decision,
    busy_by_pool,
    desired_replicas,
    encode_decision,
    shared_share,
)
from raylane.cluster.keys import Keys

log = logging.getLogger("raylane.autoscale")

POLL_S = 0.5
"""Least time between two Redis reads of one pool's policy."""
TIMEOUT_S = 0.5
"""Connect and socket timeout of the policy's Redis client."""
KEEP_S = 3600
"""How long a published decision outlives its last update."""


class QueueDepthPolicy:
    """Serve custom autoscaling policy of one pool (built by Serve from `policy_kwargs`)."""

    def __init__(self, redis_url: str, prefix: str, model: str, pool: str, shared: bool,
                 priorities: list[int | None], target_jobs: int, bounds: list[int],
                 before: list[list[Any]]) -> None:
        self.url = redis_url
        self.keys = Keys(prefix)
        self.model = model
        self.pool = pool
        self.shared = shared
        low, high = priorities
        self.range = ("-inf" if low is None else low, "+inf" if high is None else high)
        self.per_replica = target_jobs
        self.bounds = bounds
        self.before = before
        self.reading: tuple[int, int] | None = None
        """(queued, in_flight) of the last successful poll; None while Redis is unread."""
        self.last: Decision | None = None
        self._redis: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._polled = 0.0
        self._failing = False

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """The desired replica count from the last reading (Serve applies delays, bounds)."""
        self._maybe_poll()
        if self.reading is None:
            return ctx.target_num_replicas, {}
        queued, in_flight = self.reading
        desired = desired_replicas(queued, in_flight, self.per_replica, self.bounds)
        self.last = Decision(current=ctx.current_num_replicas, target=ctx.target_num_replicas,
                             desired=desired, queued=queued, in_flight=in_flight,
                             target_jobs=self.per_replica, at=time.time())
        return desired, {"queued": queued, "in_flight": in_flight}

    def _maybe_poll(self) -> None:
        if self._task is not None and not self._task.done():
            return
        now = time.monotonic()
        if now - self._polled < POLL_S:
            return
        self._polled = now
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """One reading of the pool's demand, and publication of the last decision."""
        try:
            self.reading = await self._read()
            if self.last is not None:
                await self._publish(self.last)
        except Exception as exc:  # the controller must go on: keep the target
            if not self._failing:  # once per outage, not twice a second
                log.warning("autoscaling %s/%s: cannot read Redis (%s); keeping the current "
                            "target", self.model, self.pool, exc)
            self.reading = None
            self._failing = True
        else:
            self._failing = False

    async def _read(self) -> tuple[int, int]:
        if self._redis is None:
            self._redis = aioredis.from_url(self.url, socket_timeout=TIMEOUT_S,
                                            socket_connect_timeout=TIMEOUT_S)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.queue(self.model, self.pool))
            pipe.zcount(self.keys.queue(self.model), *self.range)
            pipe.hgetall(self.keys.workers(self.model))
            own, in_range, beats = await pipe.execute()
        busy = busy_by_pool(beats.values())
        shared = shared_share(int(in_range), busy, self.before) if self.shared else 0
        return int(own) + shared, busy.get(self.pool, 0)

    async def close(self) -> None:
        """Close the Redis client (Serve drops a policy without closing it; tests close)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _publish(self, decision: Decision) -> None:
        assert self._redis is not None
        key = self.keys.scale(self.model)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, self.pool, encode_decision(decision))
            pipe.expire(key, KEEP_S)
            await pipe.execute()
