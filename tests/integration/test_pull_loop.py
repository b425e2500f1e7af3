"""Router side (runner + inbox) and worker side (pull loop) over a real Redis, no Ray.

The `sim` engine stands in for a model here: these tests are about the queue
path, and need a worker whose speed they control.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from raylane.cluster.backends import SimOptions
from raylane.cluster.config import ModelConfig, PoolConfig, QueueConfig
from raylane.cluster.errors import QueueTimeout, RequestTimeout
from raylane.cluster.keys import Keys
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Job,
    Message,
    SamplingParams,
    TextPrompt,
    TokenizeInputs,
    Tokens,
)
from raylane.cluster.queue import JobQueue
from raylane.cluster.registry import live_workers
from raylane.router.inbox import Inbox
from raylane.router.jobs import JobRunner, Restart
from raylane.workers.pull import PullLoop
from raylane.workers.sim import SimEngine

KEYS = Keys("pl")


def model(lease_s: float = 5.0, stream_interval_s: float = 0.0) -> ModelConfig:
    return ModelConfig(name="sim", queue=QueueConfig(lease_s=lease_s, max_depth=100),
                       pools=[PoolConfig(backend="sim", slots=1,
                                         stream_interval_s=stream_interval_s)])


class Harness:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.queue = JobQueue(redis, KEYS)
        self.inbox = Inbox(redis, self.queue, KEYS, "router-1")
        self.runner = JobRunner(self.queue, self.inbox)
        self.loops: list[PullLoop] = []

    def worker(self, cfg: ModelConfig, tokens_per_s: float = 200.0) -> PullLoop:
        engine = SimEngine(SimOptions(tokens_per_s=tokens_per_s))
        loop = PullLoop(self.queue, engine, cfg, cfg.pools[0], "sim-0", f"w{len(self.loops)}")
        loop.start()
        self.loops.append(loop)
        return loop

    def job(self, words: str, max_tokens: int = 4, timeout: float = 10.0) -> Job:
        now = time.time()
        return Job(id=uuid.uuid4().hex, model="sim", kind="chat",
                   prompt=ChatPrompt([Message(role="user", content=words)]),
                   params=SamplingParams(max_tokens=max_tokens), created_at=now,
                   deadline=now + timeout, reply_to=self.inbox.stream)

    async def answer(self, job: Job) -> tuple[str, list[object]]:
        events: list[object] = []
        async for _, event in self.runner.run([job], model()):
            events.append(event)
        text = "".join(e.text for e in events if isinstance(e, Delta | Done))
        return text, events


@pytest.fixture
async def harness(redis: aioredis.Redis) -> AsyncIterator[Harness]:
    h = Harness(redis)
    await h.inbox.start()
    yield h
    for loop in h.loops:
        await loop.stop(grace_s=0.1)
    await h.inbox.stop()


async def test_a_job_streams_from_worker_to_router(harness: Harness) -> None:
    harness.worker(model())
    text, events = await harness.answer(harness.job("alpha beta gamma", max_tokens=5))
    assert text == "alpha beta gamma alpha beta"
    done = events[-1]
    assert isinstance(done, Done) and done.completion_tokens == 5


async def test_a_pool_stream_interval_sends_fewer_larger_pieces(harness: Harness) -> None:
    words = "alpha beta gamma delta"
    harness.worker(model(stream_interval_s=0.1), tokens_per_s=200)  # 40 tokens: 0.2 s
    text, events = await harness.answer(harness.job(words, max_tokens=40))
    harness.worker(model())
    await harness.loops[0].stop(grace_s=0.1)
    plain_text, plain_events = await harness.answer(harness.job(words, max_tokens=40))
    assert text == plain_text and len(text.split()) == 40
    assert isinstance(events[0], Delta) and events[0].tokens == 1  # the first token at once
    assert len(events) <= 6 < 30 <= len(plain_events)


async def test_many_concurrent_requests_each_get_their_own_answer(harness: Harness) -> None:
    for _ in range(3):
        harness.worker(model(), tokens_per_s=500)
    words = [f"w{i}a w{i}b" for i in range(60)]
    answers = await asyncio.gather(*(harness.answer(harness.job(w, 2)) for w in words))
    assert [text for text, _ in answers] == words


async def test_a_queued_job_past_its_deadline_times_out_and_is_removed(harness: Harness) -> None:
    harness.worker(model(), tokens_per_s=10)
    busy = asyncio.create_task(harness.answer(harness.job("slow slow slow", max_tokens=10)))
    await asyncio.sleep(0.2)
    with pytest.raises(QueueTimeout):
        await harness.answer(harness.job("late", timeout=0.3))
    assert await harness.queue.depth("sim") == 0
    await busy


async def test_client_leaving_frees_the_worker_slot_within_a_second(harness: Harness) -> None:
    loop = harness.worker(model(), tokens_per_s=20)
    job = harness.job("long " * 10, max_tokens=400)
    stream = harness.runner.run([job], model())
    await anext(stream)
    assert len(loop.running) == 1
    left = time.monotonic()
    await stream.aclose()  # the client went away
    while loop.running:
        await asyncio.sleep(0.02)
    assert time.monotonic() - left < 1.0
    text, _ = await harness.answer(harness.job("next", max_tokens=1))
    assert text == "next"


async def test_a_worker_lost_before_answering_is_replaced_transparently(
    harness: Harness,
) -> None:
    cfg = model(lease_s=0.3)
    job = harness.job("survive this", max_tokens=2)
    answer = asyncio.create_task(harness.answer(job))
    # A worker that leases the job and then dies without a word.
    while await harness.queue.lease("sim", "doomed", lease_s=0.3) is None:
        await asyncio.sleep(0.01)
    harness.worker(cfg)  # a healthy worker's heartbeat reaps the lapsed lease
    text, events = await asyncio.wait_for(answer, 5)
    assert text == "survive this"
    assert any(isinstance(e, Restart) for e in events)


async def test_priority_order_through_the_pull_loop(harness: Harness) -> None:
    finished: list[str] = []
    harness.worker(model(), tokens_per_s=50)

    async def ask(name: str, priority: int, tokens: int = 2) -> None:
        job = msgspec.structs.replace(harness.job(name, max_tokens=tokens), priority=priority)
        await harness.answer(job)
        finished.append(name)

    async def queued(n: int) -> None:
        while await harness.queue.depth("sim") < n:
            await asyncio.sleep(0.005)

    blocker = asyncio.create_task(ask("blocker", 0, tokens=40))  # busy for 0.8 s
    while not harness.loops[0].running:
        await asyncio.sleep(0.005)
    lows = []
    for i in range(3):  # one after the other, so their order in the queue is known
        lows.append(asyncio.create_task(ask(f"low{i}", 5)))
        await queued(i + 1)
    high = asyncio.create_task(ask("high", -5))
    await queued(4)
    await asyncio.gather(blocker, high, *lows)
    assert finished == ["blocker", "high", "low0", "low1", "low2"]


async def test_deadline_mid_generation_stops_the_engine_within_a_second(
    harness: Harness,
) -> None:
    loop = harness.worker(model(), tokens_per_s=20)
    began = time.monotonic()
    with pytest.raises(RequestTimeout):
        await harness.answer(harness.job("slow " * 3, max_tokens=200, timeout=0.8))
    assert time.monotonic() - began < 1.3
    while loop.running:
        await asyncio.sleep(0.02)
    assert time.monotonic() - began < 0.8 + 1.0


def tokenize_job(harness: Harness, words: str) -> Job:
    now = time.time()
    return Job(id=uuid.uuid4().hex, model="sim", kind="tokenize",
               prompt=TokenizeInputs(TextPrompt(words), token_strs=True), created_at=now,
               deadline=now + 10, reply_to=harness.inbox.stream)


async def test_tokenize_jobs_are_answered_while_generations_hold_every_slot(
    harness: Harness,
) -> None:
    worker = harness.worker(model(), tokens_per_s=20)  # one slot; 30 tokens take 1.5 s
    running = asyncio.create_task(harness.answer(harness.job("busy", max_tokens=30)))
    queued = asyncio.create_task(harness.answer(harness.job("queued", max_tokens=30)))
    while not worker.running or not await live_workers(harness.redis, KEYS, "sim"):
        await asyncio.sleep(0.01)  # generating, and announced with its light lane
    answer = await harness.runner.result(tokenize_job(harness, "one two three"), model(),
                                         Tokens)
    assert answer.strs == ["one", "two", "three"]
    # It overtook the generation in the slot and the one queued for it.
    assert not running.done() and not queued.done()
    assert await harness.queue.depth("sim") == 1
    await asyncio.gather(running, queued)


async def test_without_a_worker_of_the_light_lane_tokenize_jobs_queue_for_a_slot(
    harness: Harness,
) -> None:
    # Scaled to zero (or only workers from before the lane): the shared queue, whose depth
    # the autoscaler reads, takes the job; a worker that comes up answers it.
    job = tokenize_job(harness, "one two")
    answer = asyncio.create_task(harness.runner.result(job, model(), Tokens))
    while not await harness.queue.depth("sim"):
        await asyncio.sleep(0.01)
    harness.worker(model())
    assert (await answer).strs == ["one", "two"]
