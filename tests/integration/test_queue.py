"""The queue contract against a real Redis: order, deadlines, leases, fencing, bounds."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
import pytest
import redis.asyncio as aioredis

from raylane.cluster.errors import QueueFull
from raylane.cluster.keys import Keys
from raylane.cluster.messages import Job, TextPrompt, failure_decoder
from raylane.cluster.queue import JobQueue

MODEL = "m"


def job(priority: int = 0, timeout: float = 30.0, name: str = "", reply: str = "inbox",
        tenant: str = "") -> Job:
    now = time.time()
    return Job(id=name or uuid.uuid4().hex, model=MODEL, kind="completion",
               prompt=TextPrompt(name or "x"), priority=priority, created_at=now,
               deadline=now + timeout, reply_to=reply, tenant=tenant)


@pytest.fixture
async def queue(redis: aioredis.Redis) -> JobQueue:
    queue = JobQueue(redis, Keys("test"))
    await queue.keep_alive("inbox", ttl_s=60)  # the router these jobs answer to is alive
    return queue


async def drain(queue: JobQueue, **kw: object) -> list[str]:
    out = []
    while (leased := await queue.lease(MODEL, "w", lease_s=30, **kw)) is not None:  # type: ignore[arg-type]
        out.append(leased.job.id)
    return out


async def inbox_events(redis: aioredis.Redis, stream: str = "inbox") -> list[tuple[str, str]]:
    entries = await redis.xrange(stream)
    return [(f[b"rid"].decode(), f[b"ev"].decode()) for _, f in entries]


async def test_lower_priority_value_first_and_fifo_within_a_priority(queue: JobQueue) -> None:
    order = [("a", 5), ("b", 0), ("c", 5), ("d", -3), ("e", 0), ("f", 5)]
    for name, priority in order:
        await queue.enqueue([job(priority, name=name)], max_depth=100)
    assert await drain(queue) == ["d", "b", "e", "a", "c", "f"]


async def test_a_job_the_worker_cannot_read_is_answered_with_an_error_not_retried(
    queue: JobQueue, redis: aioredis.Redis,
) -> None:
    # A newer router's job (an unknown kind) reaching an older worker.
    await queue.enqueue([job(name="new"), job(name="old")], max_depth=100)
    newer = msgspec.msgpack.encode({**msgspec.to_builtins(job(name="new")), "kind": "transcribe"})
    await redis.hset(queue.keys.job("new"), "body", newer)
    leased = await queue.lease(MODEL, "w", lease_s=30)
    assert leased is not None and leased.job.id == "old"  # the next one, at once
    events = [f for _, f in await redis.xrange("inbox") if f[b"rid"] == b"new"]
    assert [f[b"ev"] for f in events] == [b"started", b"error"]
    fields = events[-1]
    failure = failure_decoder.decode(fields[b"data"])
    assert failure.kind == "internal" and "older raylane than the router" in failure.message
    assert await queue.leased(MODEL) == 1  # the unreadable job is gone, not leased on
    assert await queue.lease(MODEL, "w", lease_s=30) is None


async def test_tenants_take_turns_within_a_priority_each_fifo(queue: JobQueue) -> None:
    heavy = [job(name=f"h{i}", tenant="key:heavy") for i in range(20)]
    await queue.enqueue(heavy, max_depth=100)
    first = await queue.lease(MODEL, "w", lease_s=30)  # h0 runs while the others arrive
    assert first is not None and first.job.id == "h0"
    for name in ("a0", "a1", "a2"):
        await queue.enqueue([job(name=name, tenant="key:a")], max_depth=100)
    await queue.enqueue([job(name="b0", tenant="key:b")], max_depth=100)
    await queue.enqueue([job(-1, name="urgent", tenant="key:heavy")], max_depth=100)
    order = await drain(queue)
    # A more urgent priority still comes first; then each tenant in turn, the backlog of
    # the heavy one last, every tenant's own jobs in the order they came.
    assert order[:8] == ["urgent", "h1", "a0", "b0", "h2", "a1", "h3", "a2"]
    assert order[8:] == [f"h{i}" for i in range(4, 20)]


async def test_a_tenant_back_from_idle_gets_no_credit_for_its_idle_time(
    queue: JobQueue,
) -> None:
    await queue.enqueue([job(name="q0", tenant="user:quiet")], max_depth=100)
    assert await drain(queue) == ["q0"]
    await queue.enqueue([job(name=f"h{i}", tenant="user:heavy") for i in range(6)],
                        max_depth=100)
    assert await drain(queue) == [f"h{i}" for i in range(6)]  # alone: plain FIFO
    await queue.enqueue([job(name=f"h{i}", tenant="user:heavy") for i in range(6, 9)],
                        max_depth=100)
    await queue.enqueue([job(name=f"q{i}", tenant="user:quiet") for i in range(1, 4)],
                        max_depth=100)
    # The quiet tenant was idle while the heavy one ran alone: it takes turns from now on
    # rather than running its whole batch first.
    assert await drain(queue) == ["h6", "q1", "h7", "q2", "h8", "q3"]


async def test_a_requeued_job_keeps_its_fair_share_place(queue: JobQueue) -> None:
    await queue.enqueue([job(name=f"h{i}", tenant="key:heavy") for i in range(3)],
                        max_depth=100)
    await queue.enqueue([job(name="a0", tenant="key:a")], max_depth=100)
    held = await queue.lease(MODEL, "w", lease_s=30)
    assert held is not None and held.job.id == "h0"
    assert await queue.release(MODEL, [(held.job.id, held.token)]) == 1
    assert await drain(queue) == ["h0", "a0", "h1", "h2"]


async def test_a_pool_leases_only_its_priority_range(queue: JobQueue) -> None:
    for name, priority in [("urgent", -1), ("normal", 0), ("bulk", 10)]:
        await queue.enqueue([job(priority, name=name)], max_depth=100)
    assert await drain(queue, priorities=(5, None)) == ["bulk"]
    assert await drain(queue, priorities=(None, 0)) == ["urgent", "normal"]


async def test_a_job_past_its_deadline_is_never_started_and_its_caller_is_told(
    queue: JobQueue, redis: aioredis.Redis
) -> None:
    await queue.enqueue([job(name="late", timeout=0.05)], max_depth=100)
    await queue.enqueue([job(name="fine")], max_depth=100)
    await asyncio.sleep(0.1)
    assert await drain(queue) == ["fine"]
    assert ("late", "timeout") in await inbox_events(redis)
    assert ("late", "started") not in await inbox_events(redis)


async def test_depth_bound_refuses_whole_batches_with_a_retry_hint(queue: JobQueue) -> None:
    await queue.enqueue([job(), job()], max_depth=3)
    with pytest.raises(QueueFull) as refused:
        await queue.enqueue([job(), job()], max_depth=3)
    assert refused.value.retry_after >= 1
    assert await queue.depth(MODEL) == 2  # nothing of the refused batch was queued
    await queue.enqueue([job()], max_depth=3)
    assert await queue.depth(MODEL) == 3


async def test_lapsed_lease_requeues_in_its_old_place_with_next_attempt(
    queue: JobQueue, redis: aioredis.Redis
) -> None:
    for name in ("first", "second"):
        await queue.enqueue([job(name=name)], max_depth=100)
    leased = await queue.lease(MODEL, "dying", lease_s=0.05)
    assert leased is not None and leased.job.id == "first" and leased.attempt == 1
    await asyncio.sleep(0.1)
    assert await queue.reap(MODEL, max_attempts=3) == 1
    again = await queue.lease(MODEL, "healthy", lease_s=30)
    assert again is not None and again.job.id == "first" and again.attempt == 2
    assert ("first", "requeued") in await inbox_events(redis)


async def test_a_renewed_lease_does_not_lapse(queue: JobQueue) -> None:
    await queue.enqueue([job(name="long")], max_depth=100)
    leased = await queue.lease(MODEL, "w", lease_s=0.2)
    assert leased is not None
    for _ in range(4):
        await asyncio.sleep(0.1)
        assert await queue.renew(MODEL, [("long", leased.token)], lease_s=0.2) == ["ok"]
    assert await queue.reap(MODEL, max_attempts=3) == 0


async def test_stale_worker_is_fenced_off(queue: JobQueue, redis: aioredis.Redis) -> None:
    await queue.enqueue([job(name="j")], max_depth=100)
    stale = await queue.lease(MODEL, "paused", lease_s=0.05)
    await asyncio.sleep(0.1)
    await queue.reap(MODEL, max_attempts=3)
    fresh = await queue.lease(MODEL, "other", lease_s=30)
    assert stale is not None and fresh is not None
    assert await queue.emit(stale, "delta", b'{"text":"late","tokens":1}') == 0
    assert await queue.renew(MODEL, [("j", stale.token)], lease_s=30) == ["lost"]
    assert await queue.emit(fresh, "delta", b'{"text":"ok","tokens":1}') == 1
    deltas = [f[b"data"] for _, f in await redis.xrange("inbox") if f[b"ev"] == b"delta"]
    assert deltas == [b'{"text":"ok","tokens":1}']


async def test_final_event_removes_the_job(queue: JobQueue, redis: aioredis.Redis) -> None:
    await queue.enqueue([job(name="j")], max_depth=100)
    leased = await queue.lease(MODEL, "w", lease_s=30)
    assert leased is not None
    assert await queue.emit(leased, "done", b"{}", final=True) == 1
    assert await queue.leased(MODEL) == 0
    assert not await redis.exists(queue.keys.job("j"))
    assert await queue.emit(leased, "delta", b"{}") == 0


async def test_cancel_removes_a_queued_job_and_flags_a_running_one(queue: JobQueue) -> None:
    await queue.enqueue([job(name="running"), job(name="waiting")], max_depth=100)
    leased = await queue.lease(MODEL, "w", lease_s=30)
    assert leased is not None and leased.job.id == "running"
    assert await queue.cancel("waiting") == "removed"
    assert await queue.depth(MODEL) == 0
    assert await queue.cancel("running") == "flagged"
    assert await queue.renew(MODEL, [("running", leased.token)], lease_s=30) == ["cancel"]
    assert await queue.emit(leased, "delta", b"{}") == 2
    assert await queue.cancel("never-existed") == "gone"


async def test_job_dead_lettered_after_max_attempts(
    queue: JobQueue, redis: aioredis.Redis
) -> None:
    await queue.enqueue([job(name="poison")], max_depth=100)
    for attempt in (1, 2):
        leased = await queue.lease(MODEL, f"w{attempt}", lease_s=0.01)
        assert leased is not None and leased.attempt == attempt
        await asyncio.sleep(0.03)
        await queue.reap(MODEL, max_attempts=2)
    assert await queue.lease(MODEL, "w3", lease_s=30) is None
    assert await queue.dead_letters(MODEL) == ["poison"]
    assert ("poison", "dead") in await inbox_events(redis)


async def test_many_producers_and_consumers_lose_and_duplicate_nothing(
    queue: JobQueue,
) -> None:
    producers, per_producer, consumers = 8, 250, 6
    leased_ids: list[str] = []
    produced: list[str] = []

    async def produce(p: int) -> None:
        for i in range(per_producer):
            j = job(priority=i % 3, name=f"p{p}-{i}")
            await queue.enqueue([j], max_depth=100_000)
            produced.append(j.id)

    async def consume(c: int) -> None:
        idle = 0
        while idle < 20:
            leased = await queue.lease(MODEL, f"c{c}", lease_s=30)
            if leased is None:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            leased_ids.append(leased.job.id)
            assert await queue.emit(leased, "done", b"{}", final=True) == 1

    await asyncio.gather(*(produce(p) for p in range(producers)),
                         *(consume(c) for c in range(consumers)))
    assert len(produced) == producers * per_producer
    assert sorted(leased_ids) == sorted(produced)
    assert await queue.depth(MODEL) == 0 and await queue.leased(MODEL) == 0


async def test_jobs_of_a_router_that_died_are_dropped_not_run(
    queue: JobQueue, redis: aioredis.Redis
) -> None:
    await queue.enqueue([job(name="orphan", reply="gone-router")], max_depth=100)
    await queue.enqueue([job(name="wanted")], max_depth=100)
    await redis.delete(Keys.alive("gone-router"))  # its keep-alive lapsed
    assert await drain(queue) == ["wanted"]
    assert not await redis.exists(queue.keys.job("orphan"))


async def test_enqueue_proves_the_router_alive(queue: JobQueue, redis: aioredis.Redis) -> None:
    await queue.enqueue([job(name="j", reply="fresh-router")], max_depth=100)
    assert await queue.alive(["fresh-router", "never-seen"]) == [True, False]


async def test_resending_an_enqueue_does_not_queue_twice(queue: JobQueue) -> None:
    same = job(name="once")
    await queue.enqueue([same], max_depth=100)
    await queue.enqueue([same], max_depth=100)
    assert await drain(queue) == ["once"]


async def test_release_returns_a_job_at_once_without_using_an_attempt(
    queue: JobQueue, redis: aioredis.Redis
) -> None:
    for name in ("first", "second"):
        await queue.enqueue([job(name=name)], max_depth=100)
    leased = await queue.lease(MODEL, "draining", lease_s=30)
    assert leased is not None and leased.attempt == 1
    assert await queue.release(MODEL, [("first", leased.token), ("second", "not-mine")]) == 1
    again = await queue.lease(MODEL, "other", lease_s=30)
    assert again is not None and again.job.id == "first" and again.attempt == 1
    assert ("first", "requeued") in await inbox_events(redis)


async def test_events_carry_their_sequence_number(queue: JobQueue, redis: aioredis.Redis) -> None:
    await queue.enqueue([job(name="j")], max_depth=100)
    leased = await queue.lease(MODEL, "w", lease_s=30)
    assert leased is not None
    await queue.emit(leased, "delta", b"{}", seq=1)
    await queue.emit(leased, "delta", b"{}", seq=1)  # a resend after a lost reply
    seqs = [f[b"seq"] for _, f in await redis.xrange("inbox") if f[b"ev"] == b"delta"]
    assert seqs == [b"1", b"1"]  # both arrive; the router keeps the first


async def test_jobs_ahead_count_a_newcomers_fair_share_turn(queue: JobQueue) -> None:
    await queue.enqueue([job(name=f"h{i}", tenant="key:heavy") for i in range(10)],
                        max_depth=100)
    await queue.enqueue([job(-1, name="urgent")], max_depth=100)
    assert await queue.ahead(MODEL, 0, tenant="key:heavy") == 11  # its own backlog first
    assert await queue.ahead(MODEL, 0, tenant="key:new") == 2  # the urgent one, then h0
    assert await queue.ahead(MODEL, -1) == 1
    assert await queue.depth(MODEL) == 11  # asking changed nothing
    assert (await drain(queue))[:3] == ["urgent", "h0", "h1"]
