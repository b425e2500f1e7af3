"""The job queue contract, over Redis: enqueue, lease, renew, emit, reap, cancel.

One `JobQueue` per process talks to one Redis. Every step that must not be
interleaved with another runs as a Lua script (the `.lua` files beside this
module), so a job is in exactly one place at a time: queued, leased, or gone.

Per model:
- queued jobs sit in a sorted set scored by priority (lower first) with members
  that sort, within a priority, by a fair-share tag: tenants (API keys, or the
  callers' `user`) take turns, each one's jobs FIFO (see enqueue.lua). The set is
  the model's shared queue, which its pools drain together, or the own queue of
  one pool, for a job the router sent there because the shared queue would make
  it miss its deadline;
- a worker leases one job per free slot; the lease expires unless renewed, and a
  lapsed lease puts the job back in its old place with attempt + 1, up to
  `max_attempts`, after which it is dead-lettered;
- every event a worker sends goes through `emit`, which drops it unless the
  sender still holds the job's current lease token (fencing).

Times are epoch milliseconds from the caller's clock; hosts of one cluster are
assumed to keep their clocks in step (NTP), as Redis-based job queues do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis

from raylane.cluster.errors import QueueFull
from raylane.cluster.keys import Keys
from raylane.cluster.messages import (
    Event,
    Failure,
    Job,
    LeasedJob,
    event_encoder,
    job_decoder,
    job_encoder,
)

INBOX_MAXLEN = 100_000
"""Approximate cap of one router inbox stream (entries)."""
JOB_GRACE_MS = 60_000
"""How long a job's hash outlives its deadline (so late events find it)."""
DEAD_KEEP_MS = 24 * 3600 * 1000
"""How long a dead-lettered job's hash is kept for inspection."""
FAIR_KEEP_MS = 48 * 3600 * 1000
"""How long a queue's fair-share clocks outlive its last enqueue (longer than any deadline)."""
ALIVE_TTL_S = 5.0
"""How long a router replica counts as alive after its last keep-alive."""
DRAIN_WINDOW_S = 10
"""The drain rate is measured over this many one-second buckets of finished jobs."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Drain:
    """How fast a model's queue drains: jobs finished per second, and seconds per job."""

    per_s: float
    service_s: float


@dataclass(frozen=True)
class Admission:
    """What `enqueue` tells the caller: the queue depth after the batch."""

    depth: int


class JobQueue:
    """Client side of the queue for routers and workers alike."""

    def __init__(self, redis: aioredis.Redis, keys: Keys | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self._scripts = {
            name: redis.register_script(_lua(name))
            for name in ("enqueue", "lease", "renew", "emit", "reap", "cancel", "release",
                         "ahead")
        }

    async def enqueue(self, jobs: Sequence[Job], *, max_depth: int,
                      pool: str | None = None, wake: Sequence[str] = ()) -> Admission:
        """Queue `jobs` (all of one model) atomically, or raise QueueFull.

        They go to the model's shared queue, or to `pool`'s own queue; each wakes an idle
        worker of each pool in `wake` (the pools that may take them: `config.woken`).
        """
        model = jobs[0].model
        args: list[str | bytes | int] = [self.keys.job_prefix, max_depth, JOB_GRACE_MS, len(jobs),
                                         int(ALIVE_TTL_S * 1000), FAIR_KEEP_MS]
        for job in jobs:
            args += [job.id, job.priority, int(job.deadline * 1000), job.reply_to,
                     job_encoder.encode(job), job.tenant]
        keys = [self.keys.queue(model, pool), self.keys.seq(), self.keys.fair(model, pool),
                *self._wake_keys(model, wake)]
        admitted, depth = await self._scripts["enqueue"](keys=keys, args=args)
        if not admitted:
            retry = await self.retry_after(model, depth)
            raise QueueFull(
                f"The queue of model '{model}' is full ({depth} requests waiting); "
                f"retry in {retry} s.",
                retry_after=retry,
            )
        return Admission(depth=int(depth))

    async def lease(
        self,
        model: str,
        worker: str,
        *,
        lease_s: float,
        priorities: tuple[int | None, int | None] = (None, None),
        check_routers: bool = True,
        pool: str = "",
        shared: bool = True,
    ) -> LeasedJob | None:
        """Claim the most urgent queued job in the priority range, if any, from `pool`'s own
        queue and (with `shared`) the model's shared queue.

        With `check_routers`, queued jobs whose router replica is gone are dropped on
        the way; without it (the caller cannot trust the routers' alive keys), they are
        leased like any other.
        """
        low, high = priorities
        args: list[Any] = [self.keys.job_prefix, now_ms(), int(lease_s * 1000), worker,
                "-inf" if low is None else low, "+inf" if high is None else high, INBOX_MAXLEN,
                "1" if check_routers else "0", "1" if shared else "0"]
        keys = [self.keys.queue(model), self.keys.leases(model), self.keys.queue(model, pool),
                self.keys.fair(model), self.keys.fair(model, pool)]
        while found := await self._scripts["lease"](keys=keys, args=args):
            job_id, body, token, attempt = found
            try:
                job = job_decoder.decode(body)
            except msgspec.DecodeError as exc:
                await self._unreadable(model, _text(job_id), _text(token), exc)
                continue
            return LeasedJob(job=job, token=_text(token), attempt=int(attempt))
        return None

    async def _unreadable(self, model: str, job_id: str, token: str, exc: Exception) -> None:
        """End a leased job this worker cannot read (one of a kind newer than its code,
        say) with an error: leased by one worker after another, it would fail each and be
        dead-lettered only after `max_attempts` of them."""
        failure = Failure(kind="internal", message=(
            f"The worker could not read the request ({exc}); the model's workers may run an "
            "older raylane than the router."))
        await self._emit(model, job_id, token, Event.ERROR, event_encoder.encode(failure),
                         final=True)

    async def renew(
        self, model: str, held: Iterable[tuple[str, str]], *, lease_s: float
    ) -> list[str]:
        """Extend leases of (job id, token) pairs; 'ok' | 'cancel' | 'lost' for each."""
        args: list[str | int] = [self.keys.job_prefix, now_ms(), int(lease_s * 1000)]
        for job_id, token in held:
            args += [job_id, token]
        if len(args) == 3:
            return []
        out = await self._scripts["renew"](keys=[self.keys.leases(model)], args=args)
        return [_text(status) for status in out]

    async def emit(
        self, leased: LeasedJob, event: str, data: bytes = b"", *, final: bool = False,
        seq: int = 0, runtime_s: float = 0.0, pool: str = "",
    ) -> int:
        """Send an event for a leased job: 1 sent, 2 sent but cancel asked, 0 fenced off.

        `seq` numbers the events of one attempt, so a resent event is recognised;
        `runtime_s`, with a final event, is how long the job took (for the service times
        of the model and of the sender's `pool`).
        """
        return await self._emit(leased.job.model, leased.job.id, leased.token, event, data,
                                final=final, seq=seq, runtime_s=runtime_s, pool=pool)

    async def _emit(self, model: str, job_id: str, token: str, event: str, data: bytes, *,
                    final: bool, seq: int = 0, runtime_s: float = 0.0, pool: str = "") -> int:
        bucket = int(time.time())
        return int(
            await self._scripts["emit"](
                keys=[self.keys.leases(model), self.keys.done(model, bucket),
                      self.keys.busy(model, bucket), self.keys.done(model, bucket, pool),
                      self.keys.busy(model, bucket, pool)],
                args=[self.keys.job_prefix, job_id, token, event, data,
                      "1" if final else "0", INBOX_MAXLEN, seq, int(runtime_s * 1000)],
            )
        )

    async def reap(self, model: str, *, max_attempts: int, wake: Sequence[str] = ()) -> int:
        """Requeue (or dead-letter) jobs whose lease lapsed, waking an idle worker of each
        pool in `wake` per job requeued; returns how many leases lapsed."""
        keys = [self.keys.leases(model), self.keys.queue(model), self.keys.dead(model),
                *self._wake_keys(model, wake)]
        args: list[Any] = [self.keys.job_prefix, now_ms(), max_attempts, INBOX_MAXLEN,
                           DEAD_KEEP_MS]
        return int(await self._scripts["reap"](keys=keys, args=args))

    async def release(self, model: str, held: Iterable[tuple[str, str]],
                      wake: Sequence[str] = ()) -> int:
        """Requeue jobs a stopping worker holds, at once and without using an attempt,
        waking an idle worker of each pool in `wake` per job."""
        args: list[Any] = [self.keys.job_prefix, INBOX_MAXLEN]
        for job_id, token in held:
            args += [job_id, token]
        if len(args) == 2:
            return 0
        keys = [self.keys.leases(model), self.keys.queue(model), *self._wake_keys(model, wake)]
        return int(await self._scripts["release"](keys=keys, args=args))

    def _wake_keys(self, model: str, pools: Sequence[str]) -> list[str]:
        return [self.keys.wake(model, pool) for pool in pools]

    async def keep_alive(self, inbox: str, ttl_s: float) -> None:
        """Mark the router replica owning `inbox` alive for `ttl_s`."""
        await self.redis.set(Keys.alive(inbox), "1", px=int(ttl_s * 1000))

    async def alive(self, inboxes: Sequence[str]) -> list[bool]:
        """Whether the router replicas owning `inboxes` are alive."""
        if not inboxes:
            return []
        found = await self.redis.mget([Keys.alive(i) for i in inboxes])
        return [value is not None for value in found]

    async def server_id(self) -> str:
        """Identity of the Redis process (changes when Redis restarts and loses its data)."""
        info = await self.redis.info("server")
        return str(info["run_id"])

    async def cancel(self, job_id: str) -> str:
        """'removed' if it was still queued, 'flagged' if a worker has it, else 'gone'."""
        result = await self._scripts["cancel"](keys=[], args=[self.keys.job_prefix, job_id])
        return _text(result)

    async def wait_for_work(self, model: str, pool: str, timeout_s: float) -> bool:
        """Block until a wake-up token arrives for `pool` of `model` or the timeout passes."""
        return await self.redis.blpop([self.keys.wake(model, pool)],
                                      timeout=timeout_s) is not None

    async def depth(self, model: str, pool: str | None = None) -> int:
        """Jobs in `model`'s shared queue, or in `pool`'s own queue."""
        return int(await self.redis.zcard(self.keys.queue(model, pool)))

    async def depth_by_priority(self, model: str, pool: str | None = None) -> dict[int, int]:
        """Queued jobs of `model` (shared queue, or `pool`'s own) counted per priority."""
        counts: dict[int, int] = {}
        async for _, score in self.redis.zscan_iter(self.keys.queue(model, pool)):
            counts[int(score)] = counts.get(int(score), 0) + 1
        return dict(sorted(counts.items()))

    async def leased(self, model: str) -> int:
        return int(await self.redis.zcard(self.keys.leases(model)))

    async def dead_letters(self, model: str) -> list[str]:
        members: list[Any] = list(await self.redis.zrange(self.keys.dead(model), 0, -1))
        return [_text(x) for x in members]

    async def drain(self, model: str, pool: str | None = None) -> Drain:
        """How fast `model`'s jobs (or those of one of its pools) finish, over the last ten
        seconds.

        The window starts at the oldest second with a finished job, so a model that
        just started working is measured over the time it has been working.
        """
        now = time.time()
        second = int(now)
        seconds = range(second - DRAIN_WINDOW_S, second + 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([self.keys.done(model, s, pool) for s in seconds])
            pipe.mget([self.keys.busy(model, s, pool) for s in seconds])
            done_raw, busy_raw = await pipe.execute()
        done = [int(c) if c is not None else 0 for c in done_raw]
        busy = sum(int(b) for b in busy_raw if b is not None) / 1000
        first = next((i for i, n in enumerate(done) if n), None)
        if first is None:
            return Drain(0.0, 0.0)
        span = now - seconds[first]
        return Drain(sum(done) / max(span, 1.0), busy / sum(done))

    async def drain_rate(self, model: str) -> float:
        """Jobs of `model` finished per second, over the last ten seconds."""
        return (await self.drain(model)).per_s

    async def retry_after(self, model: str, depth: int) -> int:
        """Seconds until a queue of `depth` has drained at the measured rate (1..600).

        With nothing finished lately there is no rate to go by (the model's workers are
        starting, or stuck on long jobs); the answer is then a short 5 s.
        """
        rate = await self.drain_rate(model)
        if rate <= 0:
            return 5
        return max(1, min(600, math.ceil(depth / rate)))

    async def ahead(self, model: str, priority: int, pool: str | None = None,
                    tenant: str = "") -> int:
        """Jobs in `model`'s shared queue (or `pool`'s own) that would start before a new
        job of `priority` and `tenant` there (the tenant's fair share counted)."""
        keys = [self.keys.queue(model, pool), self.keys.fair(model, pool)]
        return int(await self._scripts["ahead"](keys=keys, args=[priority, tenant]))

    async def position(self, job_id: str) -> int | None:
        """Where a queued job stands in its queue now (1: the next to be leased), or None
        when it is not queued (leased, finished or gone)."""
        queue, member = await self.redis.hmget(self.keys.job(job_id), ["queue", "member"])
        if queue is None or member is None:
            return None
        rank = await self.redis.zrank(queue, member)
        return rank + 1 if isinstance(rank, int) else None


def _lua(name: str) -> str:
    return resources.files("raylane.cluster").joinpath(f"lua/{name}.lua").read_text()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
