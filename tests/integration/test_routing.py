"""Routing by deadline: under a backlog on the fast pool, tight requests go to a slower pool.

The model has a fast `gpu` pool (two slots, 40 tokens/s) draining its shared queue and a
slow `cpu` overflow pool (one slot, 10 tokens/s) that takes only what the router sends it.
A backlog of loose requests keeps the fast pool busy for seconds; requests whose deadline
that backlog would miss are answered by the slow pool, in time, and the loose ones still
all complete on the fast pool, in order.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from raylane.cluster.config import ModelConfig, PoolConfig, QueueConfig
from raylane.cluster.errors import WaitExceedsDeadline
from raylane.cluster.messages import Done
from raylane.router.timeline import Timeline
from tests.conftest import REDIS_BINARIES
from tests.integration.harness import answer, job, start_cluster

MODEL = ModelConfig(name="sim", queue=QueueConfig(max_depth=10_000, lease_s=2.0),
                    pools=[PoolConfig(backend="sim", name="gpu"),
                           PoolConfig(backend="sim", name="cpu", overflow=True)])
TOKENS = 8  # 0.175 s on a gpu slot, 0.7 s on the cpu slot
TIGHT_S = 2.0


async def served_by(router, words: str, timeout: float) -> tuple[str, float]:
    began = time.monotonic()
    _, events = await answer(router, job(router, words, max_tokens=TOKENS, timeout=timeout))
    done = events[-1]
    assert isinstance(done, Done)
    return done.worker.split("@")[0], time.monotonic() - began


@pytest.mark.parametrize("binary", [REDIS_BINARIES[-1][1]], ids=[REDIS_BINARIES[-1][0]])
async def test_tight_deadlines_go_to_the_slow_pool_and_meet_them(binary: str) -> None:
    cluster = start_cluster(MODEL, binary)
    try:
        router = await cluster.router()
        cluster.worker(tokens_per_s=40, slots=2, pool=0)
        cpu = cluster.worker(tokens_per_s=10, slots=1, pool=1)
        warm = [served_by(router, f"warm{i}", 30) for i in range(10)]
        assert {pool for pool, _ in await asyncio.gather(*warm)} == {"gpu"}

        backlog = [asyncio.create_task(served_by(router, f"loose{i}", 60)) for i in range(80)]
        await asyncio.sleep(1.0)
        tight = []
        for i in range(4):
            tight.append(await served_by(router, f"tight{i}", TIGHT_S))
            await asyncio.sleep(0.3)
        assert [pool for pool, _ in tight] == ["cpu"] * 4
        assert all(took < TIGHT_S for _, took in tight)
        assert not all(t.done() for t in backlog)  # the backlog was still there

        # Without a slow pool to turn to, a tight request is refused at once.
        await cpu.stop(grace_s=0.1)
        began = time.monotonic()
        with pytest.raises(WaitExceedsDeadline):
            await served_by(router, "nowhere", TIGHT_S)
        assert time.monotonic() - began < 0.5

        loose = await asyncio.gather(*backlog)
        assert {pool for pool, _ in loose} == {"gpu"}  # overflow pools take nothing shared
    finally:
        await cluster.close()


@pytest.mark.parametrize("binary", [REDIS_BINARIES[-1][1]], ids=[REDIS_BINARIES[-1][0]])
async def test_idle_pools_that_cannot_take_a_job_do_not_hold_it_up(binary: str) -> None:
    # Beside the pool that takes everything: one that takes only priority 5 and up, and an
    # overflow pool. Their idle workers must not take the wake-up meant for the first.
    model = ModelConfig(name="sim", queue=QueueConfig(max_depth=100, lease_s=2.0),
                        pools=[PoolConfig(backend="sim", name="main"),
                               PoolConfig(backend="sim", name="batch", priorities=(5, None)),
                               PoolConfig(backend="sim", name="spill", overflow=True)])
    cluster = start_cluster(model, binary)
    try:
        router = await cluster.router()
        for pool in range(3):
            cluster.worker(tokens_per_s=1000, slots=1, pool=pool)
        await asyncio.sleep(0.5)  # every worker idle, waiting for work
        waits = []
        for i in range(10):
            timeline = Timeline()
            async for _ in router.runner.run([job(router, f"w{i}", 2)], model, timeline):
                pass
            waits.append(timeline.timings()["queue_ms"])
            await asyncio.sleep(0.05)  # the worker is idle again before the next one
        assert max(waits) < 300, waits  # a lost wake-up costs the 1 s fallback poll
    finally:
        await cluster.close()
