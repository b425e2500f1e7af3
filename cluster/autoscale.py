"""Per-pool autoscaling on queue depth: Ray Serve's class-based custom policy.

A pool with `replicas.min` < `replicas.max` deploys with `autoscaling_config` naming
`QueueDepthPolicy` (see `policy_config`). Serve builds one instance per pool in its
controller, passing `policy_kwargs`, and calls it every control-loop tick; Serve itself
then applies the bounds and the up/down delays (`idle_s` is its
`downscale_to_zero_delay_s`). The rule:

    demand  = queued jobs the pool could take + jobs its replicas run now
    desired = ceil(demand / target_jobs), within [min, max]

Queued jobs a pool could take: its own queue (jobs the router sent it), plus, unless it is
an overflow pool, the model's shared queue within its priority range. Several pools that
drain the shared queue share its backlog in config order: a pool counts only the jobs the
pools listed before it (with overlapping priority ranges) could not take even at their
`max` (their spare jobs = max x target_jobs - running). List the pool that serves a model
best first; later pools grow when it cannot keep up.

The policy itself is in `autoscale_policy.py` (Serve pickles that module by value into
its controller; msgspec Structs must not be pickled so, hence the split). This module
holds what it shares with the rest of raylane: the config it gets, the rule, and the
decision it publishes in `Keys.scale(model)` for `raylane status`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from raylane.cluster.config import ModelConfig, PoolConfig, pool_name, target_jobs
from raylane.cluster.keys import Keys
from raylane.cluster.registry import STALE_S

POLICY = "raylane.cluster.autoscale_policy:QueueDepthPolicy"
"""Import path of the Serve policy class (Serve pickles its module into the controller)."""


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    """The policy's last decision for one pool, as `raylane status` shows it."""

    current: int
    """Running replicas Serve reported."""
    target: int
    """Serve's target after the delays (what it is scaling to)."""
    desired: int
    """What the queue asks for: ceil((queued + in_flight) / target_jobs), within bounds."""
    queued: int
    in_flight: int
    target_jobs: int
    at: float


def policy_config(model: ModelConfig, index: int, redis_url: str, prefix: str) -> dict[str, Any]:
    """Serve's `autoscaling_config` (a plain dict) of an autoscaled pool."""
    pool = model.pools[index]
    replicas = pool.replicas
    kwargs = {
        "redis_url": redis_url, "prefix": prefix, "model": model.name,
        "pool": pool_name(pool, index), "shared": not pool.overflow,
        "priorities": list(pool.priorities), "target_jobs": target_jobs(pool),
        "bounds": [replicas.min, replicas.max], "before": _before(model, index),
    }
    return {
        "min_replicas": replicas.min,
        "max_replicas": replicas.max,
        "initial_replicas": replicas.min,
        "upscale_delay_s": replicas.upscale_delay_s,
        "downscale_delay_s": replicas.downscale_delay_s,
        "downscale_to_zero_delay_s": replicas.idle_s,
        "policy": {"policy_function": POLICY, "policy_kwargs": kwargs},
    }


def _before(model: ModelConfig, index: int) -> list[list[Any]]:
    """[name, jobs it can carry at max] of the shared-queue pools listed before pool `index`
    whose priority ranges overlap its own."""
    mine = model.pools[index]
    if mine.overflow:
        return []
    return [[pool_name(pool, i), pool.replicas.max * target_jobs(pool)]
            for i, pool in enumerate(model.pools[:index])
            if not pool.overflow and _overlap(pool, mine)]


def _overlap(a: PoolConfig, b: PoolConfig) -> bool:
    low = max(-math.inf if p.priorities[0] is None else p.priorities[0] for p in (a, b))
    high = min(math.inf if p.priorities[1] is None else p.priorities[1] for p in (a, b))
    return low <= high


def desired_replicas(queued: int, in_flight: int, per_replica: int, bounds: list[int]) -> int:
    """Replicas for `queued` + `in_flight` jobs at `per_replica` each, within `bounds`."""
    low, high = bounds
    return max(low, min(high, math.ceil((queued + in_flight) / per_replica)))


def shared_share(in_range: int, busy: dict[str, int], before: list[list[Any]]) -> int:
    """The part of the shared backlog `in_range` left to a pool after the pools `before` it
    took what they can carry at their max."""
    spare = sum(max(0, int(carry) - busy.get(name, 0)) for name, carry in before)
    return max(0, in_range - spare)


def busy_by_pool(beats: Any) -> dict[str, int]:
    """Running jobs per pool, from the workers' recent heartbeats (raw JSON values)."""
    now = time.time()
    busy: dict[str, int] = {}
    for raw in beats:
        beat = msgspec.json.decode(raw)
        if now - beat["at"] <= STALE_S:
            busy[beat["pool"]] = busy.get(beat["pool"], 0) + int(beat["busy"])
    return busy


async def read_decisions(redis: aioredis.Redis, keys: Keys, model: str) -> dict[str, Decision]:
    """The last published decision of each autoscaled pool of `model`."""
    raw = await redis.hgetall(keys.scale(model))
    return {(k.decode() if isinstance(k, bytes) else k): msgspec.json.decode(v, type=Decision)
            for k, v in raw.items()}


def encode_decision(decision: Decision) -> bytes:
    return msgspec.json.encode(decision)
