"""While a streaming request waits in the queue: its position, told as SSE comments.

A stream's HTTP status is decided by its first item. `with_notes` passes a request's
events through and, while none has come and the request is still queued, adds a `Note`
every `every_s`: `queue position 3, estimated wait 2.4 s` (position 1 is the next job to
be leased; the wait is the position over the queue's measured drain rate, left out while
no rate is measured). The first note comes only after one whole interval of waiting, so
a request that fails sooner (queue full, a deadline of less than that) still gets a plain
HTTP error; after the first note the stream has begun, and an error is an in-stream
error event, as it is once text was sent. SSE clients, the OpenAI and Anthropic SDKs
among them, ignore comment lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import RedisError

from raylane.cluster.messages import Job
from raylane.router.jobs import JobRunner
from raylane.router.timeline import Timeline

T = TypeVar("T")


@dataclass(frozen=True)
class Note:
    """Something to tell a waiting client in an SSE comment."""

    text: str

    def sse(self) -> bytes:
        return b": " + self.text.encode() + b"\n\n"


_closing: set[asyncio.Task[None]] = set()
"""Tasks finishing the events of requests whose caller left while they waited."""


async def with_notes(
    events: AsyncGenerator[T, None], every_s: float, note: Callable[[], Awaitable[str | None]]
) -> AsyncGenerator[T | Note, None]:
    """`events`, with a `Note` each time `every_s` passes before the first event and `note`
    has something to say. Once the first event came (or with `every_s` 0), only events."""
    if every_s > 0:
        # The first event is awaited in a task of its own, to race it with the interval.
        step = asyncio.ensure_future(anext(events))
        try:
            while not (await asyncio.wait({step}, timeout=every_s))[0]:
                text = await note()
                if text is not None:
                    yield Note(text)
        except BaseException:
            _close_later(events, step)  # the caller left (or failed) while it waited
            raise
        try:
            first = step.result()
        except StopAsyncIteration:
            return
        async with contextlib.aclosing(events):
            yield first
            async for item in events:
                yield item
        return
    async with contextlib.aclosing(events):
        async for item in events:
            yield item


def _close_later(events: AsyncGenerator[T, None], step: asyncio.Future[T]) -> None:
    """Stop waiting for the first event and close `events` (its jobs are cancelled there),
    in a task of its own: the caller's task may be inside a cancelled scope, where every
    await fails at once, and `events` cannot be closed while the step still runs in it."""

    async def close() -> None:
        step.cancel()
        await asyncio.wait({step})
        await events.aclose()

    task = asyncio.ensure_future(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def queue_note(runner: JobRunner, job: Job, timeline: Timeline) -> str | None:
    """Where a waiting request's first job stands, or None when it is not waiting."""
    if not timeline.waiting:
        return None
    try:
        position = await runner.queue.position(job.id)
        drain = await runner.capacity.drain(job.model, timeline.pool)
    except (RedisError, OSError):
        return None  # nothing to tell this time; the request itself goes on
    if position is None:
        return None
    if drain.per_s <= 0:
        return f"queue position {position}"
    return f"queue position {position}, estimated wait {position / drain.per_s:.1f} s"


def queue_notes(
    events: AsyncGenerator[T, None], runner: JobRunner, jobs: Sequence[Job],
    timeline: Timeline, every_s: float,
) -> AsyncGenerator[T | Note, None]:
    """`events` of a request, with queue-position notes while its jobs wait."""
    return with_notes(events, every_s, lambda: queue_note(runner, jobs[0], timeline))
