"""Retry loops over Redis stop when cancelled, even when a timeout hides the cancel."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import RedisError, TimeoutError

from raylane.cluster.redis_client import raise_if_cancelled


async def read_that_hides_cancels() -> None:
    """A Redis read whose timeout wins the race with a cancel (Python 3.11's asyncio.timeout)."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise TimeoutError("Timeout reading from 127.0.0.1:6379") from None


async def retry_forever(attempts: list[int]) -> None:
    while True:
        attempts.append(1)
        try:
            await read_that_hides_cancels()
        except RedisError:
            raise_if_cancelled()
            await asyncio.sleep(0.01)


async def test_a_cancel_hidden_by_a_read_timeout_still_stops_the_loop() -> None:
    attempts: list[int] = []
    task = asyncio.create_task(retry_forever(attempts))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert len(attempts) == 1


async def test_a_plain_failure_is_retried() -> None:
    async def fails_twice(calls: list[int]) -> str:
        while True:
            calls.append(1)
            try:
                if len(calls) < 3:
                    raise TimeoutError("Timeout reading")
                return "read"
            except RedisError:
                raise_if_cancelled()

    calls: list[int] = []
    assert await fails_twice(calls) == "read" and len(calls) == 3
