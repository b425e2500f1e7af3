"""Per-key limits that hold across router replicas: rate buckets and token budgets.

`admit` runs `key_admit.lua`: the key's requests-per-minute and tokens-per-minute
token buckets and its budget are checked and taken in one atomic step, so any
number of router replicas together admit no more than the limits allow.
`settle` runs `key_settle.lua` when a request ends: the unused part of the budget
reservation goes back and the key's usage counters grow.
"""

from __future__ import annotations

import math
from importlib import resources

import redis.asyncio as aioredis

from raylane.cluster.apikeys import ApiKey
from raylane.cluster.errors import InsufficientQuota, RateLimited
from raylane.cluster.keys import Keys
from raylane.cluster.queue import now_ms


class KeyLimiter:
    """Check-and-take of one key's limits, and settling of finished requests."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._admit = redis.register_script(_lua("key_admit"))
        self._settle = redis.register_script(_lua("key_settle"))

    async def admit(self, key: ApiKey, cost: int) -> None:
        """Take one request and `cost` tokens from the key's limits, or raise."""
        verdict, value = await self._admit(keys=[self.keys.key_limits(key.name)],
                                           args=[now_ms(), key.rpm, key.tpm, cost])
        if verdict == 1:
            retry = max(1, math.ceil(int(value) / 1000))
            raise RateLimited(
                f"Rate limit of API key '{key.name}' reached "
                f"({key.rpm} requests, {key.tpm} tokens per minute); retry in {retry} s.",
                retry_after=retry)
        if verdict == 2:
            raise InsufficientQuota(
                f"API key '{key.name}' has {int(value)} tokens of budget left; this request "
                f"reserves {cost} (its max_tokens).", retry_after=3600)

    async def settle(self, key: ApiKey, refund: int, prompt_tokens: int,
                     completion_tokens: int) -> None:
        """Give back `refund` reserved tokens and count one request's usage."""
        await self._settle(keys=[self.keys.key_limits(key.name), self.keys.key_usage(key.name)],
                           args=[max(0, refund), prompt_tokens, completion_tokens])


def _lua(name: str) -> str:
    return resources.files("raylane.cluster").joinpath(f"lua/{name}.lua").read_text()
