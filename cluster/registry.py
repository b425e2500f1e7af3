"""Worker replicas announce themselves in Redis; status readers see who is alive."""

from __future__ import annotations

import time

import msgspec
import redis.asyncio as aioredis

from raylane.cluster.keys import Keys

STALE_S = 3.0
"""A worker not heard from for this long is taken for gone."""


class WorkerBeat(msgspec.Struct, kw_only=True, frozen=True):
    worker: str
    pool: str
    backend: str
    slots: int
    busy: int
    at: float
    node: str = ""
    pid: int = 0
    light: bool = False
    """Whether the worker serves the model's light lane (`LIGHT_LANE`)."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerBeat).decode


async def announce(redis: aioredis.Redis, keys: Keys, model: str, beat: WorkerBeat) -> None:
    await redis.hset(keys.workers(model), beat.worker, _encode(beat))


async def retire(redis: aioredis.Redis, keys: Keys, model: str, worker: str) -> None:
    await redis.hdel(keys.workers(model), worker)


async def live_workers(redis: aioredis.Redis, keys: Keys, model: str) -> list[WorkerBeat]:
    """Workers of `model` heard from recently; forgets the stale ones."""
    beats = [_decode(raw) for raw in (await redis.hgetall(keys.workers(model))).values()]
    now = time.time()
    stale = [b.worker for b in beats if now - b.at > STALE_S]
    if stale:
        await redis.hdel(keys.workers(model), *stale)
    return sorted((b for b in beats if now - b.at <= STALE_S), key=lambda b: b.worker)
