"""The worker's pull loop: lease a job whenever a slot is free, run it, stream it back.

A replica with `slots` free slots holds at most `slots` leases. Each running job
streams its engine's output through `JobQueue.emit`, which is fenced by the
lease token: if the lease was lost (this worker was paused past it, or cut off)
the events are dropped and the job is abandoned here. A heartbeat renews the
leases of running jobs, learns of cancellations, requeues lapsed leases of
dead workers, and announces this worker in the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from raylane.cluster.config import ModelConfig, PoolConfig
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import Delta, Done, Event, Failure, LeasedJob, event_encoder
from raylane.cluster.queue import JobQueue
from raylane.cluster.registry import WorkerBeat, announce, retire
from raylane.workers.engine import Engine

log = logging.getLogger("raylane.worker")

IDLE_WAIT_S = 1.0
"""Longest an idle worker waits for a wake-up before polling the queue again."""
HEARTBEAT_S = 0.5
"""Heartbeat period: bounds how late a cancellation is noticed."""


@dataclass
class Running:
    leased: LeasedJob
    task: asyncio.Task[None] | None = None
    stop: str | None = None
    """Why the job is being stopped early: 'cancel', 'lost' or 'deadline'."""
    deltas: list[Delta] = field(default_factory=list)


class PullLoop:
    def __init__(self, queue: JobQueue, engine: Engine, model: ModelConfig, pool: PoolConfig,
                 pool_name: str, worker_id: str) -> None:
        self.queue = queue
        self.engine = engine
        self.model = model
        self.pool = pool
        self.pool_name = pool_name
        self.worker_id = worker_id
        self.running: dict[str, Running] = {}
        self._slots = asyncio.Semaphore(pool.slots)
        self._leasing = True
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lease_forever(), name="raylane-lease"),
                       asyncio.create_task(self._heartbeat_forever(), name="raylane-heartbeat")]

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self, grace_s: float) -> None:
        """Stop leasing, give running jobs up to `grace_s` to finish, then abort them."""
        self._leasing = False
        await _cancel(self._tasks[:1])
        pending = [r.task for r in self.running.values() if r.task is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for job_id, run in list(self.running.items()):
                if run.task in late:
                    run.stop = "lost"  # its lease lapses and the job is retried elsewhere
                    await self.engine.abort(job_id)
                    run.task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await _cancel(self._tasks)
        with contextlib.suppress(RedisError, OSError):
            await retire(self.queue.redis, self.queue.keys, self.model.name, self.worker_id)

    async def _lease_forever(self) -> None:
        while self._leasing:
            await self._slots.acquire()
            try:
                leased = await self._lease_next()
            except BaseException:
                self._slots.release()
                raise
            run = Running(leased)
            self.running[leased.job.id] = run
            run.task = asyncio.create_task(self._run(run), name=f"job-{leased.job.id}")

    async def _lease_next(self) -> LeasedJob:
        """Wait until a job can be leased, and lease it."""
        while True:
            try:
                leased = await self.queue.lease(
                    self.model.name, self.worker_id, lease_s=self.model.queue.lease_s,
                    priorities=self.pool.priorities)
                if leased is not None:
                    return leased
                await self.queue.wait_for_work(self.model.name, IDLE_WAIT_S)
            except (RedisError, OSError) as exc:
                if not self._leasing:
                    raise asyncio.CancelledError from exc
                log.warning("lease failed (%s); retrying", exc)
                await asyncio.sleep(IDLE_WAIT_S)

    async def _run(self, run: Running) -> None:
        job = run.leased.job
        try:
            async with asyncio.timeout(max(0.0, job.deadline - time.time())):
                await self._generate(run)
        except TimeoutError:
            run.stop = run.stop or "deadline"
        except Exception as exc:  # the job's own failure, reported to its caller
            await self._finish(run, Event.ERROR, event_encoder.encode(_failure(exc)))
        finally:
            if run.stop in ("cancel", "deadline"):
                await self._finish(run, Event.CANCELLED, b"")
            self.running.pop(job.id, None)
            self._slots.release()

    async def _generate(self, run: Running) -> None:
        job = run.leased.job
        stream = self.engine.generate(job.id, job.prompt, job.params)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for item in stream:
                if isinstance(item, Done):
                    await self._finish(run, Event.DONE, event_encoder.encode(item))
                    return
                status = await self.queue.emit(run.leased, Event.DELTA,
                                               event_encoder.encode(item))
                if status == 0:
                    run.stop = "lost"
                    return
                if status == 2:
                    run.stop = "cancel"
                    return

    async def _finish(self, run: Running, event: Event, data: bytes) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.queue.emit(run.leased, event, data, final=True)

    async def _heartbeat_forever(self) -> None:
        while self._leasing or self.running:
            try:
                await self._heartbeat()
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def _heartbeat(self) -> None:
        held = [(job_id, run.leased.token) for job_id, run in self.running.items()]
        statuses = await self.queue.renew(self.model.name, held, lease_s=self.model.queue.lease_s)
        for (job_id, _), status in zip(held, statuses, strict=True):
            run = self.running.get(job_id)
            if status != "ok" and run is not None and run.stop is None:
                run.stop = status
                await self.engine.abort(job_id)
                if run.task is not None:
                    run.task.cancel()
        await self.queue.reap(self.model.name, max_attempts=self.model.queue.max_attempts)
        await announce(self.queue.redis, self.queue.keys, self.model.name, WorkerBeat(
            worker=self.worker_id, pool=self.pool_name, backend=self.pool.backend,
            slots=self.pool.slots, busy=len(self.running), at=time.time()))


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait for them, again if a library swallowed the cancellation."""
    while pending := [t for t in tasks if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)


def _failure(exc: BaseException) -> Failure:
    if isinstance(exc, ContextLengthExceeded):
        return Failure(kind="context_length", message=exc.message, param=exc.param)
    if isinstance(exc, InvalidRequest):
        return Failure(kind="invalid_request", message=exc.message, param=exc.param)
    log.exception("generation failed", exc_info=exc)
    return Failure(kind="engine", message=f"The engine failed: {exc}")
