"""The autoscaling policy's rule against a real Redis, without Ray: what it reads and wants.

The policy is called as Serve's controller calls it: synchronously, inside a running event
loop, with an `AutoscalingContext`-like object; its Redis reads run in a one-shot task.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import redis.asyncio as aioredis

from raylane.cluster.autoscale import policy_config, read_decisions
from raylane.cluster.autoscale_policy import POLL_S, QueueDepthPolicy
from raylane.cluster.config import ModelConfig, PoolConfig, PoolReplicas
from raylane.cluster.keys import Keys
from raylane.cluster.redis_server import RedisServer, free_port
from raylane.cluster.registry import WorkerBeat, announce

KEYS = Keys("t")
GPU = PoolConfig(backend="sim", name="gpu", slots=2, replicas=PoolReplicas(min=0, max=2))
CPU = PoolConfig(backend="sim", name="cpu", slots=1, priorities=(0, 5),
                 replicas=PoolReplicas(min=1, max=4, target_jobs=2))
SPILL = PoolConfig(backend="sim", name="spill", overflow=True,
                   replicas=PoolReplicas(min=1, max=3))
MODEL = ModelConfig(name="m", pools=[GPU, CPU, SPILL])


def policy(index: int, url: str) -> QueueDepthPolicy:
    kwargs = policy_config(MODEL, index, url, KEYS.prefix)["policy"]["policy_kwargs"]
    return QueueDepthPolicy(**kwargs)


async def decide(p: QueueDepthPolicy, current: int = 1, target: int = 1) -> int:
    """One call, then (after its Redis read has run) the next one's answer."""
    ctx = SimpleNamespace(current_num_replicas=current, target_num_replicas=target)
    try:
        p(ctx)
        assert p._task is not None
        await p._task
        p._polled = time.monotonic() - POLL_S  # the next call may poll again
        desired, _ = p(ctx)
        return int(desired)
    finally:
        await p.close()


async def queue(redis: aioredis.Redis, priorities: list[int], pool: str | None = None) -> None:
    await redis.zadd(KEYS.queue("m", pool), {f"job{pool}{i}": p for i, p in
                                             enumerate(priorities)})


async def test_demand_is_queue_plus_in_flight_over_target_within_bounds(
        redis: aioredis.Redis, redis_server: RedisServer) -> None:
    assert await decide(policy(0, redis_server.url), current=0, target=0) == 0  # idle: min
    await queue(redis, [0, 0, 3, 9])
    await announce(redis, KEYS, "m", WorkerBeat(worker="g1", pool="gpu", backend="sim",
                                               slots=2, busy=2, at=time.time()))
    # gpu takes every priority: 4 queued + 2 running at 2 per replica wants 3, max 2.
    assert await decide(policy(0, redis_server.url)) == 2
    decisions = await read_decisions(redis, KEYS, "m")
    assert (decisions["gpu"].queued, decisions["gpu"].in_flight) == (4, 2)
    assert decisions["gpu"].desired == 2


async def test_later_pools_take_only_the_backlog_earlier_ones_cannot(
        redis: aioredis.Redis, redis_server: RedisServer) -> None:
    await queue(redis, [0] * 9 + [9])
    # gpu (listed first) carries 2 x 2 = 4 at its max; cpu (priorities 0..5: 9 jobs) gets
    # the other 5, at 2 per replica: 3 replicas.
    assert await decide(policy(1, redis_server.url)) == 3
    # The overflow pool takes nothing from the shared queue, only its own.
    assert await decide(policy(2, redis_server.url)) == 1
    await queue(redis, [0, 0], pool="spill")
    assert await decide(policy(2, redis_server.url)) == 2


async def test_with_redis_down_the_policy_keeps_the_current_target() -> None:
    p = policy(1, f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    assert await decide(p, current=3, target=3) == 3
    assert time.monotonic() - started < 2  # short timeouts: the controller is not held up
