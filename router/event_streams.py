"""What the answers of one chat job share across APIs (Anthropic's Messages, OpenAI's
Responses): the whole text, and a stream of named events around the job's events.

A stream's HTTP status is decided by its first item (`first_item`): a job event, or a
queue-position comment (`waiting.py`). After that, the stream has begun: the API's
opening events and the events of each job event go out (those of one job event as one
write: one message through Serve's proxy), then its closing events; a failure ends it
with the API's error event instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import JobLost, RaylaneError
from raylane.cluster.messages import Done, Job
from raylane.router.jobs import JobEvent, JobRunner, Restart, text_only
from raylane.router.timeline import Timeline
from raylane.router.waiting import Note, queue_notes

Item = tuple[int, JobEvent] | Note
Items = AsyncGenerator[Item, None]


def lost_after_output() -> JobLost:
    """The error of a stream whose job restarts after some of its answer went out."""
    return JobLost("The worker generating this response was lost after part of it was sent; "
                   "the response is incomplete. Retry the request.")


async def whole_text(runner: JobRunner, job: Job, model: ModelConfig,
                     timeline: Timeline) -> tuple[str, Done]:
    """Run a chat job to its end: its whole text and its Done. A restart starts the text
    over (nothing reached the client)."""
    text: list[str] = []
    done: Done | None = None
    async for _, job_event in runner.run([job], model, timeline):
        event = text_only(job_event)
        if isinstance(event, Restart):
            text.clear()
            continue
        text.append(event.text)
        if isinstance(event, Done):
            done = event
    if done is None:
        raise JobLost("The job ended without an answer.")
    return "".join(text), done


async def first_item(runner: JobRunner, jobs: Sequence[Job], model: ModelConfig,
                     timeline: Timeline, notes_every_s: float) -> tuple[Item, Items]:
    """Run `jobs` for a stream, with queue-position notes every `notes_every_s` while they
    wait: the first item, and the rest. Raises (as an HTTP error) if they fail before it."""
    items = queue_notes(runner.run(jobs, model, timeline), runner, jobs, timeline,
                        notes_every_s)
    return await anext(items), items


async def named_events(
    first: Item, rest: Items, *, opening: list[bytes],
    events: Callable[[JobEvent], list[bytes]], failed: Callable[[RaylaneError], bytes],
    closing: Callable[[], list[bytes]],
) -> AsyncIterator[bytes]:
    """The stream: `opening`, the `events` of each job event, then `closing()`; or, once a
    job event raised, what was held and `failed(error)`."""
    head = [first.sse()] if isinstance(first, Note) else []
    head += opening
    try:
        if not isinstance(first, Note):
            head += events(first[1])
        yield b"".join(head)
        head = []
        async for item in rest:
            if chunks := [item.sse()] if isinstance(item, Note) else events(item[1]):
                yield b"".join(chunks)
    except RaylaneError as exc:
        yield b"".join(head) + failed(exc)
        return
    finally:
        await rest.aclose()
    yield b"".join(closing())
