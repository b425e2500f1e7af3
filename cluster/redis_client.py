"""How raylane connects to Redis: bounded timeouts, and no silent retries.

redis-py can retry a command after a dropped connection, but the queue's
scripts are not all idempotent (an `emit` replayed would send a delta twice),
so raylane turns automatic retries off and retries where it knows it is safe:
enqueue is idempotent per job id, and events carry a per-attempt sequence
number that the router uses to drop duplicates.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

CONNECT_TIMEOUT_S = 2.0
"""A request during a Redis outage fails in about this long, not a TCP timeout."""
SOCKET_TIMEOUT_S = 3.0
"""Longer than any blocking read raylane issues (XREAD and BLPOP block for 1 s)."""


MAX_CONNECTIONS = 64
"""Connections one process opens; more concurrent commands wait for a free one."""
POOL_WAIT_S = 5.0
"""Longest a command waits for a free connection before failing."""


def connect(url: str) -> aioredis.Redis:
    """An asyncio Redis client for `url` with raylane's timeouts and a bounded pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=10,
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis.from_pool(pool)


def raise_if_cancelled() -> None:
    """In a loop that retries Redis failures: re-raise a cancellation the failure hid.

    A task cancelled while a Redis read's own timeout expires can see the read's
    TimeoutError instead of CancelledError (Python 3.11's `asyncio.timeout` lets the
    expiry win that race), and redis-py can swallow a cancel while it tears down a broken
    connection; a loop that went on would never stop. Call it in the except block and at
    the top of each round.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
