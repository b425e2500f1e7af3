"""The worker's pull loop: lease a job whenever a slot is free, run it, stream it back.

A replica with `slots` free slots holds at most `slots` leases of its pool's jobs; a
second lease loop takes the model's light jobs (tokenizing, `LIGHT_LANE`), up to
`LIGHT_SLOTS` at once beside the slots, so they never wait for one. Each running job
streams its engine's output through `JobQueue.emit`, which is fenced by the
lease token: if the lease was lost (this worker was paused past it, or cut off)
the events are dropped and the job is abandoned here. A heartbeat renews the
leases of running jobs, learns of cancellations, requeues lapsed leases of
dead workers, and announces this worker in the registry.

Jobs whose router replica is gone (its alive key lapsed) are stopped, or dropped
from the queue, since nobody would read their answer. Right after a Redis outage
the alive keys say nothing (no router could refresh its key while Redis was
away), so for `ALIVE_TTL_S` after its last failed Redis call a worker does not
act on them.

Each job's start and end are logged with its request id (`job_fields`: the caller's
`X-Request-ID`, as the router logs it), never with its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import msgspec
from redis.exceptions import RedisError

from raylane.cluster.config import LIGHT_LANE, ModelConfig, PoolConfig, pool_names
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import (
    DetokenizeInputs,
    Done,
    EmbedInputs,
    Event,
    Failure,
    LeasedJob,
    TokenizeInputs,
    Tokens,
    event_encoder,
)
from raylane.cluster.metrics import Recorder
from raylane.cluster.queue import ALIVE_TTL_S, JobQueue
from raylane.cluster.redis_client import raise_if_cancelled
from raylane.cluster.registry import WorkerBeat, announce, retire
from raylane.workers.coalesce import coalesced
from raylane.workers.engine import Engine
from raylane.workers.job_metrics import JobClock, PoolMetrics

log = logging.getLogger("raylane.worker")

IDLE_WAIT_S = 1.0
"""Longest an idle worker waits for a wake-up before polling the queue again."""
LIGHT_SLOTS = 4
"""Light jobs (tokenizing) one worker runs at once, beside its slots."""
HEARTBEAT_S = 0.5
"""Heartbeat period: bounds how late a cancellation is noticed."""


@dataclass(frozen=True)
class Lane:
    """Where one lease loop takes jobs from, and how many of them may run at once."""

    queue: str
    """The pool whose own queue (and wake-up list) it reads: this worker's, or `LIGHT_LANE`."""
    slots: asyncio.Semaphore
    priorities: tuple[int | None, int | None] = (None, None)
    shared: bool = False
    """Whether it also takes from the model's shared queue."""


@dataclass
class Running:
    leased: LeasedJob
    lane: Lane
    task: asyncio.Task[None] | None = None
    stop: str | None = None
    """Why the job is being stopped early: 'cancel', 'lost', 'deadline' or 'release'."""
    seq: int = 0
    """Events sent so far in this attempt (numbers them for the router's de-duplication)."""
    renewed: float = field(default_factory=time.monotonic)
    """When the lease was last known to hold."""
    began: float = field(default_factory=time.monotonic)
    clock: JobClock | None = None
    """Times the job for the metrics."""


class PullLoop:
    def __init__(self, queue: JobQueue, engine: Engine, model: ModelConfig, pool: PoolConfig,
                 pool_name: str, worker_id: str) -> None:
        self.queue = queue
        self.engine = engine
        self.model = model
        self.pool = pool
        self.pool_name = pool_name
        self.worker_id = worker_id
        self.wake = [*pool_names(model), LIGHT_LANE]
        """The lanes a job this worker gives back wakes: all of the model's."""
        self.metrics = PoolMetrics(Recorder(queue.redis, queue.keys), model.name, pool_name)
        self.running: dict[str, Running] = {}
        self.lanes = (Lane(pool_name, asyncio.Semaphore(pool.slots), pool.priorities,
                           shared=not pool.overflow),
                      Lane(LIGHT_LANE, asyncio.Semaphore(LIGHT_SLOTS)))
        """Its slots, on its pool's queues; and the model's light lane."""
        self._leasing = True
        self._tasks: list[asyncio.Task[None]] = []
        self._routers_trusted_at = 0.0
        """Monotonic time from which the routers' alive keys are trusted again."""

    def start(self) -> None:
        self.metrics.recorder.start()
        self._tasks = [*(asyncio.create_task(self._lease_forever(lane), name="raylane-lease")
                         for lane in self.lanes),
                       asyncio.create_task(self._heartbeat_forever(), name="raylane-heartbeat")]

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self, grace_s: float) -> None:
        """Stop leasing; running jobs get `grace_s` to finish, the rest go back to the queue."""
        self._leasing = False
        await _cancel(self._tasks[:-1])  # the lease loops
        pending = [r.task for r in self.running.values() if r.task is not None]
        late: set[asyncio.Task[None]] = set()
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
        held = []
        for job_id, run in list(self.running.items()):
            if run.task in late:
                held.append((job_id, run.leased.token))
                await self._stop_job(run, "release")
        await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.queue.release(self.model.name, held, wake=self.wake)
        await _cancel(self._tasks)
        with contextlib.suppress(RedisError, OSError):
            await retire(self.queue.redis, self.queue.keys, self.model.name, self.worker_id)
        await self.metrics.recorder.stop()

    async def _lease_forever(self, lane: Lane) -> None:
        while self._leasing:
            await lane.slots.acquire()
            try:
                leased = await self._lease_next(lane)
            except BaseException:
                lane.slots.release()
                raise
            run = Running(leased, lane, clock=self.metrics.clock(leased))
            self.running[leased.job.id] = run
            run.task = asyncio.create_task(self._run(run), name=f"job-{leased.job.id}")

    async def _lease_next(self, lane: Lane) -> LeasedJob:
        """Wait until a job of `lane` can be leased, and lease it."""
        while True:
            raise_if_cancelled()  # a library may have swallowed the cancel
            try:
                leased = await self.queue.lease(
                    self.model.name, self.worker_id, lease_s=self.model.queue.lease_s,
                    priorities=lane.priorities, check_routers=self._routers_trusted,
                    pool=lane.queue, shared=lane.shared)
                if leased is not None:
                    return leased
                await self.queue.wait_for_work(self.model.name, lane.queue, IDLE_WAIT_S)
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                self._redis_failed()
                if not self._leasing:
                    raise asyncio.CancelledError from exc
                log.warning("lease failed (%s); retrying", exc)
                await asyncio.sleep(IDLE_WAIT_S)

    async def _run(self, run: Running) -> None:
        job = run.leased.job
        fields = job_fields(run.leased, self.worker_id)
        log.info("job started", extra=fields)
        ended = "done"
        try:
            async with asyncio.timeout(max(0.0, job.deadline - time.time())):
                await self._generate(run)
        except TimeoutError:
            run.stop = run.stop or "deadline"
        except Exception as exc:  # the job's own failure, reported to its caller
            failure = _failure(exc)
            ended = failure.kind
            if failure.kind == "engine":
                log.error("generation failed", exc_info=exc, extra=fields)
            await self._emit(run, Event.ERROR, event_encoder.encode(failure), final=True)
        finally:
            if run.stop in ("cancel", "deadline"):
                await self._emit(run, Event.CANCELLED, b"", final=True)
            self.running.pop(job.id, None)
            run.lane.slots.release()
            log.info("job finished", extra=fields | {
                "outcome": run.stop or ended,
                "runtime_ms": round((time.monotonic() - run.began) * 1000, 1)})

    async def _generate(self, run: Running) -> None:
        job = run.leased.job
        if isinstance(job.prompt, EmbedInputs):
            await self._embed(run, job.prompt)
            return
        if isinstance(job.prompt, TokenizeInputs | DetokenizeInputs):
            await self._tokenize(run, job.prompt)
            return
        stream = coalesced(self.engine.generate(job.id, job.prompt, job.params),
                           observe=run.clock.item if run.clock is not None else None,
                           interval_s=self.pool.stream_interval_s)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, Done):
                    done = msgspec.structs.replace(item, worker=self.worker_id)
                    if not await self._emit(run, Event.DONE, event_encoder.encode(done),
                                            final=True):
                        run.stop = "lost"  # fenced off: the job moved on without this answer
                    return
                status = await self._emit(run, Event.DELTA, event_encoder.encode(item))
                if status == 0:
                    run.stop = "lost"
                    return
                if status == 2:
                    run.stop = "cancel"
                    return

    async def _embed(self, run: Running, work: EmbedInputs) -> None:
        embeddings = await self.engine.embed(run.leased.job.id, work.inputs)
        if work.dimensions is not None and work.dimensions != embeddings.dim:
            raise InvalidRequest(
                f"This model's embeddings have {embeddings.dim} dimensions; it cannot make "
                f"{work.dimensions}.", param="dimensions")
        if run.clock is not None:
            run.clock.embedded(embeddings)
        await self._emit(run, Event.DONE, event_encoder.encode(embeddings), final=True)

    async def _tokenize(self, run: Running, work: TokenizeInputs | DetokenizeInputs) -> None:
        if isinstance(work, TokenizeInputs):
            answer = await self.engine.tokenize(work)
        else:
            answer = Tokens(text=await self.engine.detokenize(work.tokens),
                            context_length=self.engine.context_length)
        await self._emit(run, Event.DONE, event_encoder.encode(answer), final=True)

    async def _emit(self, run: Running, event: Event, data: bytes, final: bool = False) -> int:
        """Send one event, retrying through Redis hiccups while the lease can still hold.

        A resent event keeps its sequence number, so the router drops the copy if the
        first try did arrive.
        """
        # No raise_if_cancelled here: a stopped job's last event is sent from its task's
        # `finally`, after the cancel was delivered; the lease bounds the retries.
        run.seq += 1
        delay = 0.05
        while True:
            try:
                return await self.queue.emit(run.leased, event, data, final=final, seq=run.seq,
                                             runtime_s=time.monotonic() - run.began,
                                             pool=self.pool_name)
            except (RedisError, OSError) as exc:
                self._redis_failed()
                if time.monotonic() - run.renewed > self.model.queue.lease_s:
                    log.warning("giving up the job: Redis unreachable past the lease (%s)",
                                exc, extra=job_fields(run.leased, self.worker_id))
                    return 0
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _stop_job(self, run: Running, why: str) -> None:
        if run.stop is None:
            run.stop = why
            await self.engine.abort(run.leased.job.id)
            if run.task is not None:
                run.task.cancel()

    def _redis_failed(self) -> None:
        self._routers_trusted_at = time.monotonic() + ALIVE_TTL_S

    @property
    def _routers_trusted(self) -> bool:
        return time.monotonic() >= self._routers_trusted_at

    async def _heartbeat_forever(self) -> None:
        while self._leasing or self.running:
            raise_if_cancelled()  # a library may have swallowed the cancel
            try:
                await self._heartbeat()
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                self._redis_failed()
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def _heartbeat(self) -> None:
        runs = list(self.running.values())
        held = [(run.leased.job.id, run.leased.token) for run in runs]
        statuses = await self.queue.renew(self.model.name, held, lease_s=self.model.queue.lease_s)
        routers = await self.queue.alive([run.leased.job.reply_to for run in runs])
        now = time.monotonic()
        for run, status, router_alive in zip(runs, statuses, routers, strict=True):
            if status == "ok":
                run.renewed = now
            if status == "ok" and not router_alive and self._routers_trusted:
                status = "cancel"  # its router replica is gone: nobody reads the answer
            if status != "ok":
                await self._stop_job(run, status)
        await self.queue.reap(self.model.name, max_attempts=self.model.queue.max_attempts,
                              wake=self.wake)
        await announce(self.queue.redis, self.queue.keys, self.model.name, WorkerBeat(
            worker=self.worker_id, pool=self.pool_name, backend=self.pool.backend,
            slots=self.pool.slots, at=time.time(), pid=os.getpid(), node=socket.gethostname(),
            busy=sum(run.lane is self.lanes[0] for run in self.running.values()), light=True))


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait for them, again if a library swallowed the cancellation."""
    while pending := [t for t in tasks if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)


def job_fields(leased: LeasedJob, worker: str) -> dict[str, object]:
    """What the log lines about a job say of it: ids and names, never its text."""
    job = leased.job
    return {"request_id": job.request_id, "job": job.id, "model": job.model,
            "attempt": leased.attempt, "worker": worker}


def _failure(exc: BaseException) -> Failure:
    if isinstance(exc, ContextLengthExceeded):
        return Failure(kind="context_length", message=exc.message, param=exc.param)
    if isinstance(exc, InvalidRequest):
        return Failure(kind="invalid_request", message=exc.message, param=exc.param)
    return Failure(kind="engine", message=f"The engine failed: {exc}")
