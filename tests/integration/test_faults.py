"""What the queue path does when Redis, a router or a worker fails, over real processes.

Router replicas and workers run here in one event loop (no Ray) against a
redis-server each test starts, kills, pauses and restarts. The `sim` engine
stands in for a model: these tests are about the queue path.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import pytest

from raylane.cluster.errors import ServiceUnavailable
from raylane.cluster.queue import ALIVE_TTL_S
from raylane.cluster.redis_client import connect
from raylane.router.models import health
from tests.integration.harness import Cluster, Restart, answer, job


async def test_redis_restart_fails_waiting_requests_at_once_and_all_reconnect(
    cluster: Cluster,
) -> None:
    router = await cluster.router()
    worker = cluster.worker(tokens_per_s=10)
    waiting = asyncio.create_task(answer(router, job(router, "long " * 5, max_tokens=200)))
    while not worker.running:
        await asyncio.sleep(0.05)
    cluster.restart_redis()
    lost_at = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="Redis restarted"):
        await waiting
    assert time.monotonic() - lost_at < 5
    for _ in range(100):  # the worker notices its job is gone and frees the slot
        if not worker.running:
            break
        await asyncio.sleep(0.1)
    assert not worker.running
    text, _ = await asyncio.wait_for(answer(router, job(router, "back again", 2)), 10)
    assert text == "back again"


async def test_redis_outage_gets_quick_503s_and_in_flight_requests_complete(
    cluster: Cluster,
) -> None:
    router = await cluster.router()
    cluster.worker(tokens_per_s=10)
    in_flight = asyncio.create_task(answer(router, job(router, "patient", max_tokens=20)))
    await asyncio.sleep(0.5)
    assert cluster.server.process is not None
    os.kill(cluster.server.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(3.5)
        with pytest.raises(ServiceUnavailable):
            router.keeper.check()
        with pytest.raises(ServiceUnavailable):  # what /health answers (503)
            await health(router)
        began = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await answer(router, job(router, "refused"))
        assert time.monotonic() - began < 0.5
    finally:
        os.kill(cluster.server.process.pid, signal.SIGCONT)
    text, _ = await asyncio.wait_for(in_flight, 20)
    assert text == " ".join(["patient"] * 20)
    await asyncio.sleep(1)
    router.keeper.check()  # healthy again
    text, _ = await asyncio.wait_for(answer(router, job(router, "welcome back", 2)), 10)
    assert text == "welcome back"


async def test_a_dead_routers_jobs_stop_running_and_never_start(cluster: Cluster) -> None:
    doomed = await cluster.router()
    survivor = await cluster.router()
    worker = cluster.worker(tokens_per_s=10, slots=1)
    queue = worker.queue
    running = job(doomed, "nobody listens", max_tokens=500)
    queued = job(doomed, "never run", max_tokens=5)
    for waiting in (running, queued):
        doomed.inbox.register(waiting.id)  # requests the doomed replica is answering
    await queue.enqueue([running, queued], max_depth=100)
    while running.id not in worker.running:
        await asyncio.sleep(0.05)
    # The replica dies: no cleanup, its keep-alive simply stops.
    assert doomed.keeper._task is not None and doomed.inbox._task is not None
    doomed.keeper._task.cancel()
    doomed.inbox._task.cancel()
    died = time.monotonic()
    while running.id in worker.running:
        await asyncio.sleep(0.1)
        assert time.monotonic() - died < ALIVE_TTL_S + 2
    # The slot is free: the dead router's queued job is dropped, the other router's served.
    text, _ = await asyncio.wait_for(answer(survivor, job(survivor, "carry on", 4)), 10)
    assert text == "carry on carry on"
    assert await queue.depth("sim") == 0
    assert not await queue.redis.exists(queue.keys.job(queued.id))
    events = await queue.redis.xrange(doomed.reply_to)
    started = [f[b"rid"].decode() for _, f in events if f[b"ev"] == b"started"]
    assert queued.id not in started, [(f[b"rid"][:6], f[b"ev"]) for _, f in events]


async def test_thousands_of_cancelled_requests_never_mix_answers(cluster: Cluster) -> None:
    router = await cluster.router()
    for _ in range(3):
        cluster.worker(tokens_per_s=2000, slots=16)
    rng = random.Random(7)
    results: list[tuple[str, str]] = []

    async def one(i: int) -> None:
        words = f"req{i}a req{i}b req{i}c"
        try:
            text, _ = await asyncio.wait_for(answer(router, job(router, words, 3)),
                                             rng.choice([0.001, 0.01, 0.05, 5.0]))
        except TimeoutError:
            return
        results.append((words, text))

    for start in range(0, 2000, 250):
        await asyncio.gather(*(one(i) for i in range(start, start + 250)))
    assert len(results) > 200
    assert all(words == text for words, text in results)


async def test_cancelled_redis_reads_never_return_another_commands_reply(
    cluster: Cluster,
) -> None:
    redis = connect(cluster.server.url)
    await redis.mset({f"k{i}": f"v{i}" for i in range(500)})
    mismatches = 0
    for _ in range(20):
        async def read(i: int) -> None:
            nonlocal mismatches
            try:
                value = await asyncio.wait_for(redis.get(f"k{i}"), random.random() / 1000)
            except TimeoutError:
                return
            if value != f"v{i}".encode():
                mismatches += 1

        await asyncio.gather(*(read(i) for i in range(500)))
    await redis.aclose()
    assert mismatches == 0


async def test_draining_worker_hands_unfinished_jobs_to_another(cluster: Cluster) -> None:
    router = await cluster.router()
    leaving = cluster.worker(tokens_per_s=20)
    request = asyncio.create_task(answer(router, job(router, "moving on", max_tokens=40)))
    while not leaving.running:
        await asyncio.sleep(0.02)
    cluster.worker(tokens_per_s=200)
    await leaving.stop(grace_s=0.2)
    text, events = await asyncio.wait_for(request, 10)
    assert text == " ".join(["moving", "on"] * 20)
    assert isinstance(events[0], Restart)  # it moved, and the client saw one clean answer


async def test_draining_worker_finishes_what_fits_in_its_grace(cluster: Cluster) -> None:
    router = await cluster.router()
    leaving = cluster.worker(tokens_per_s=50)
    request = asyncio.create_task(answer(router, job(router, "quick", max_tokens=10)))
    while not leaving.running:
        await asyncio.sleep(0.02)
    await leaving.stop(grace_s=5)
    text, events = await request
    assert text == " ".join(["quick"] * 10)
    assert not any(isinstance(e, Restart) for e in events)

