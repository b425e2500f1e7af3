"""Run jobs through the queue and read back what happens to them.

`JobRunner.run` enqueues a request's jobs atomically and turns each job's inbox
events into what the endpoint needs: `Delta`s, one `Done`, a `Restart` when a
worker was lost before finishing (the job is being retried), or an exception
from `raylane.cluster.errors`. Whatever way the caller stops listening
(finished, error, client gone), jobs still queued or running are cancelled.
Each step (enqueued, started, first text, end) is noted in the request's `Timeline`,
and one log line per request says how it ended: ids, outcome and timings, never text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeAlias, TypeVar

from redis.exceptions import RedisError

from raylane.cluster.apikeys import ApiKey
from raylane.cluster.config import LIGHT_LANE, ModelConfig, woken
from raylane.cluster.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    JobLost,
    QueueTimeout,
    RaylaneError,
    RequestTimeout,
    ServiceUnavailable,
)
from raylane.cluster.limits import KeyLimiter
from raylane.cluster.messages import (
    Answer,
    Delta,
    Done,
    Embeddings,
    Failure,
    Job,
    Tokens,
    delta_decoder,
    done_decoder,
    embeddings_decoder,
    failure_decoder,
    tokens_decoder,
)
from raylane.cluster.metrics import Recorder
from raylane.cluster.queue import JobQueue
from raylane.router.auth import current_key
from raylane.router.capacity import Capacity
from raylane.router.inbox import Inbox, InboxEvent
from raylane.router.request_metrics import RequestTally, outcome
from raylane.router.timeline import Timeline

log = logging.getLogger("raylane.router")


@dataclass(frozen=True)
class Restart:
    """The worker holding the job was lost; the job runs again from the start."""

    attempt: int


JobEvent: TypeAlias = Delta | Done | Embeddings | Tokens | Restart
"""What a job's events come to: text, its end (an `Answer`: `Done`, or `Embeddings` for an
embedding job, `Tokens` for a tokenize job), or a restart."""

WholeAnswer = TypeVar("WholeAnswer", Embeddings, Tokens)


class JobRunner:
    def __init__(self, queue: JobQueue, inbox: Inbox,
                 ready: Callable[[], None] = lambda: None,
                 limiter: KeyLimiter | None = None, metrics: Recorder | None = None) -> None:
        self.queue = queue
        self.inbox = inbox
        self.ready = ready
        """Raises ServiceUnavailable when the queue is known to be unreachable."""
        self.capacity = Capacity(queue)
        self.limiter = limiter
        """Takes the current API key's limits at admission and settles them at the end."""
        self.metrics = metrics
        """Counts each request by how it ended (`raylane_requests_total`)."""

    async def run(
        self, jobs: Sequence[Job], model: ModelConfig, timeline: Timeline | None = None
    ) -> AsyncGenerator[tuple[int, JobEvent], None]:
        """Enqueue `jobs` (of `model`) and yield (index, event) until each has its Answer;
        with an API key, within its limits, settled however the run ends;
        counted in the metrics however it ends. `timeline` notes when each step happened."""
        tally = RequestTally.of(self.metrics, jobs, model.name)
        events = self._keyed(jobs, model, timeline or Timeline())
        try:
            async with contextlib.aclosing(events):
                async for index, event in events:
                    tally.see(event)
                    yield index, event
        except BaseException as exc:
            tally.fail(exc)
            raise

    async def _keyed(
        self, jobs: Sequence[Job], model: ModelConfig, timeline: Timeline
    ) -> AsyncGenerator[tuple[int, JobEvent], None]:
        key = current_key.get()
        if key is None or self.limiter is None:
            async for item in self._run(jobs, model, timeline):
                yield item
            return
        meter = Meter(jobs=len(jobs), reserved=sum(reservation(job, model) for job in jobs))
        try:
            await self.limiter.admit(key, meter.reserved)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"The key limits are unreachable: {exc}") from exc
        try:
            async for index, event in self._run(jobs, model, timeline):
                meter.count(index, event)
                if meter.finished:
                    # before the last event: a caller may stop listening once it has it
                    await _settle_quietly(self.limiter, key, meter)
                yield index, event
        finally:
            await _settle_quietly(self.limiter, key, meter)

    async def _run(
        self, jobs: Sequence[Job], model: ModelConfig, timeline: Timeline
    ) -> AsyncGenerator[tuple[int, JobEvent], None]:
        self.ready()
        waiters = [self.inbox.register(job.id) for job in jobs]
        pending = set(range(len(jobs)))
        failure: BaseException | None = None
        try:
            try:
                pool, wake = await self._lane(jobs, model)
                timeline.queued(pool)
                await self.queue.enqueue(jobs, max_depth=model.queue.max_depth, pool=pool,
                                         wake=wake)
            except (RedisError, OSError) as exc:
                raise ServiceUnavailable(f"The queue is unreachable: {exc}") from exc
            streams = [_follow(job, waiter, partial(timeline.start, i))
                       for i, (job, waiter) in enumerate(zip(jobs, waiters, strict=True))]
            async for index, event in _merge(streams):
                _note(timeline, index, event)
                if isinstance(event, Answer):
                    pending.discard(index)
                yield index, event
        except BaseException as exc:
            failure = exc
            raise
        finally:
            for job in jobs:
                self.inbox.unregister(job.id)
            if pending:
                await _cancel_quietly(self.queue, [jobs[i].id for i in pending])
            _log_end(jobs, timeline, not pending, failure)


    async def _lane(self, jobs: Sequence[Job], model: ModelConfig
                    ) -> tuple[str | None, list[str]]:
        """The queue the jobs go to (None: the model's shared queue) and the pools they wake:
        tokenize jobs to the model's light lane, where a worker serves it, so they never wait
        for a slot behind generations; others where the capacity estimate routes them."""
        if all(job.kind == "tokenize" for job in jobs) and await self.capacity.light(model.name):
            return LIGHT_LANE, [LIGHT_LANE]
        pool = await self.capacity.route(jobs, model)
        return pool, woken(model, jobs[0].priority, pool)

    async def result(self, job: Job, model: ModelConfig, answer: type[WholeAnswer],
                     timeline: Timeline | None = None) -> WholeAnswer:
        """Run one job whose answer comes whole (an embedding or tokenize job) and return it."""
        async for _, event in self.run([job], model, timeline):
            if isinstance(event, answer):
                return event
            if isinstance(event, Answer):  # a worker out of step with this router's contract
                raise EngineError(f"A worker answered a {job.kind} job with "
                                  f"{type(event).__name__}.")
        raise JobLost("The job ended without an answer.")


def text_only(event: JobEvent) -> Delta | Done | Restart:
    """An event of a generation job, or EngineError for a worker out of step with this
    router's contract that answered it as another kind."""
    if isinstance(event, Embeddings | Tokens):
        raise EngineError(f"A worker answered a generation job with {type(event).__name__}.")
    return event


def _note(timeline: Timeline, index: int, event: JobEvent) -> None:
    if isinstance(event, Restart):
        timeline.restart(index)
    else:
        timeline.output(index, final=isinstance(event, Answer))


def _log_end(jobs: Sequence[Job], timeline: Timeline, answered: bool,
             failure: BaseException | None) -> None:
    """One line per request that reached the queue: how it ended, and its timings."""
    result, code = ("ok", "") if answered else outcome(failure or asyncio.CancelledError())
    fields: dict[str, object] = {"request_id": jobs[0].request_id, "model": jobs[0].model,
                                 "jobs": len(jobs), "outcome": result}
    if code:
        fields["code"] = code
    if timeline.pool is not None:
        fields["pool"] = timeline.pool
    level = logging.WARNING if result == "error" else logging.INFO
    log.log(level, "request finished", extra=fields | timeline.timings())


async def _follow(job: Job, waiter: asyncio.Queue[InboxEvent],
                  on_start: Callable[[], None]) -> AsyncIterator[JobEvent]:
    """The events of one job, ending after its Done; raises on failure or deadline.
    `on_start` is called when a worker starts it (each attempt)."""
    started = False
    attempt = seq = 0
    while True:
        try:
            async with asyncio.timeout(max(0.0, job.deadline - time.time())):
                event = await waiter.get()
        except TimeoutError:
            raise _timeout(job, started) from None
        if event.seq and (event.attempt != attempt or event.seq <= seq):
            continue  # from an earlier attempt, or a resent event already seen
        seq = event.seq or seq
        if event.name == "started":
            started, attempt, seq = True, event.attempt, 0
            on_start()
        elif event.name == "delta":
            yield delta_decoder.decode(event.data)
        elif event.name == "done":
            yield _answer(job, event.data)
            return
        elif event.name == "requeued":
            started = False
            yield Restart(attempt=event.attempt)
        else:
            _raise_for(job, event, started)


def _answer(job: Job, data: bytes) -> Done | Embeddings | Tokens:
    """The last event of a job, as its kind answers."""
    if job.kind == "embedding":
        return embeddings_decoder.decode(data)
    if job.kind == "tokenize":
        return tokens_decoder.decode(data)
    return done_decoder.decode(data)


def _raise_for(job: Job, event: InboxEvent, started: bool) -> None:
    if event.name == "error":
        raise _failure(failure_decoder.decode(event.data))
    if event.name == "timeout":
        raise _timeout(job, started)
    if event.name == "dead":
        raise JobLost(
            f"The request failed on {event.attempt} workers in a row and was set aside "
            f"(request id {job.request_id})."
        )
    if event.name == "cancelled":
        raise RequestTimeout("The request was cancelled before it finished.")
    if event.name == "lost":
        raise ServiceUnavailable(event.data.decode())


def _timeout(job: Job, started: bool) -> RequestTimeout:
    waited = time.time() - job.created_at
    if started:
        return RequestTimeout(f"The request did not finish within its deadline ({waited:.1f} s).")
    return QueueTimeout(
        f"The request waited {waited:.1f} s in the queue and reached its deadline before "
        "any worker could start it."
    )


def _failure(failure: Failure) -> RaylaneError:
    cls = {
        "invalid_request": InvalidRequest,
        "context_length": ContextLengthExceeded,
    }.get(failure.kind, EngineError)
    return cls(failure.message, param=failure.param)


async def _merge(
    streams: Sequence[AsyncIterator[JobEvent]],
) -> AsyncIterator[tuple[int, JobEvent]]:
    """Interleave several event streams, tagging each event with its stream's index."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    out: asyncio.Queue[tuple[int, JobEvent | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[JobEvent]) -> None:
        try:
            async for event in stream:
                out.put_nowait((index, event))
            out.put_nowait((index, None))
        except Exception as exc:
            out.put_nowait((index, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        live = len(tasks)
        while live:
            index, item = await out.get()
            if item is None:
                live -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def reservation(job: Job, model: ModelConfig) -> int:
    """Tokens a job may generate at most: what its key's budget reserves for it."""
    if job.kind in ("embedding", "tokenize"):
        return 0
    return job.params.max_tokens or job.params.limit or model.max_tokens or DEFAULT_RESERVE


DEFAULT_RESERVE = 4096
"""Tokens reserved for a job that sets no max_tokens on a model with no cap."""


@dataclass
class Meter:
    """Tokens one request used, per job, as its events arrive."""

    jobs: int
    reserved: int
    prompt: dict[int, int] = field(default_factory=dict)
    completion: dict[int, int] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    settled: bool = False

    @property
    def finished(self) -> bool:
        return len(self.ended) == self.jobs

    def count(self, index: int, event: JobEvent) -> None:
        if isinstance(event, Answer):
            self.ended.add(index)
        if isinstance(event, Restart):
            self.completion[index] = 0
        elif isinstance(event, Done):
            self.prompt[index] = event.prompt_tokens
            self.completion[index] = event.completion_tokens
        elif isinstance(event, Embeddings):
            self.prompt[index] = event.prompt_tokens
        elif isinstance(event, Delta):
            self.completion[index] = self.completion.get(index, 0) + event.tokens

    @property
    def used(self) -> int:
        return sum(self.completion.values())


async def _settle_quietly(limiter: KeyLimiter, key: ApiKey, meter: Meter) -> None:
    """Refund and count a request (once) even while the caller itself is being cancelled."""
    if meter.settled:
        return
    meter.settled = True

    async def settle() -> None:
        with contextlib.suppress(RedisError, OSError):
            await limiter.settle(key, meter.reserved - meter.used, sum(meter.prompt.values()),
                                 meter.used)

    task = asyncio.ensure_future(settle())
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(task)


async def _cancel_quietly(queue: JobQueue, job_ids: list[str]) -> None:
    """Cancel jobs even while the caller itself is being cancelled."""

    async def cancel_all() -> None:
        for job_id in job_ids:
            with contextlib.suppress(RedisError, OSError):
                await queue.cancel(job_id)

    task = asyncio.ensure_future(cancel_all())
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(task)
