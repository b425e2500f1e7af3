"""API keys: minted once, stored only as their SHA-256, looked up in constant time.

A key is `rl-` + 32 random bytes (urlsafe base64). Redis holds the SHA-256 (hex) of
each key, never the key: `Keys.api_key(digest)` is the key's record, and
`Keys.api_key_names()` maps names to digests for listing and revoking. A lookup
fetches the record by digest and compares the digest stored in it with
`hmac.compare_digest`, so the answer's timing does not depend on how much of a
guess matched.

This module must never log or store a key in the clear.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Annotated

import msgspec
import redis.asyncio as aioredis

from raylane.cluster.keys import Keys
from raylane.cluster.messages import Priority

KEY_PREFIX = "rl-"

Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
"""Requests or tokens: exact in the doubles the limit scripts count with."""


class ApiKey(msgspec.Struct, kw_only=True, frozen=True):
    """What one key may do (its record, without the secret)."""

    name: str
    models: list[str] = []
    """Models (served names or aliases) the key may use; empty: all."""
    default_priority: Priority | None = None
    """Priority of a request that names none; null: the model's default."""
    max_priority: Priority | None = None
    """Most urgent priority the key may ask for (lower is more urgent); a more urgent
    request is clamped to it. null: any."""
    rpm: Count = 0
    """Requests per minute, cluster-wide; 0: unlimited."""
    tpm: Count = 0
    """Tokens (max_tokens reserved) per minute, cluster-wide; 0: unlimited."""
    budget: Count | None = None
    """Tokens the key may spend in all; null: unlimited."""
    created: float = 0.0
    """When the key was minted (epoch seconds)."""

    def allows(self, names: list[str]) -> bool:
        """Whether the key may use a model known by any of `names`."""
        return not self.models or any(name in self.models for name in names)


class Usage(msgspec.Struct, kw_only=True, frozen=True):
    """What one key has spent so far."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    budget_left: int | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ApiKey)


def new_secret() -> str:
    """A fresh API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a key is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """Create, look up, list and revoke API keys in Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, key: ApiKey) -> str:
        """Store `key` and return its secret (the only time it is known); the name must be
        new."""
        secret = new_secret()
        hashed = digest(secret)
        if not await self.redis.hsetnx(self.keys.api_key_names(), key.name, hashed):
            raise ValueError(f"an API key named {key.name!r} exists")
        record = msgspec.structs.replace(key, created=time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.api_key(hashed),
                      mapping={"digest": hashed, "record": _encoder.encode(record)})
            pipe.delete(self.keys.key_limits(key.name))
            if key.budget is not None:
                pipe.hset(self.keys.key_limits(key.name), "budget", key.budget)
            await pipe.execute()
        return secret

    async def lookup(self, secret: str) -> ApiKey | None:
        """The key's record, or None for an unknown or revoked key."""
        hashed = digest(secret)
        stored, record = await self.redis.hmget(self.keys.api_key(hashed), "digest", "record")
        if stored is None or record is None:
            return None
        stored = stored.decode() if isinstance(stored, bytes) else stored
        if not hmac.compare_digest(stored.encode(), hashed.encode()):
            return None
        return _decoder.decode(record)

    async def list(self) -> list[ApiKey]:
        """Every key's record, by name."""
        digests = await self.redis.hgetall(self.keys.api_key_names())
        found = []
        for _, hashed in sorted(digests.items()):
            record = await self.redis.hget(self.keys.api_key(_text(hashed)), "record")
            if record is not None:
                found.append(_decoder.decode(record))
        return found

    async def revoke(self, name: str) -> bool:
        """Revoke the key named `name`; False if there is none. Its usage stays readable."""
        hashed = await self.redis.hget(self.keys.api_key_names(), name)
        if hashed is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.api_key(_text(hashed)), self.keys.key_limits(name))
            pipe.hdel(self.keys.api_key_names(), name)
            await pipe.execute()
        return True

    async def usage(self, name: str) -> Usage:
        """Requests and tokens counted for the key named `name`, and its budget left."""
        counts = await self.redis.hgetall(self.keys.key_usage(name))
        left = await self.redis.hget(self.keys.key_limits(name), "budget")
        values = {_text(k): int(v) for k, v in counts.items()}
        return Usage(requests=values.get("requests", 0),
                     prompt_tokens=values.get("prompt_tokens", 0),
                     completion_tokens=values.get("completion_tokens", 0),
                     budget_left=None if left is None else int(left))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
