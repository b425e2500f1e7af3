"""What the unit tests of the one-job APIs (Anthropic's Messages, OpenAI's Responses) share:
a runner that replays job events in place of the queue, and a reader of named SSE events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import msgspec

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import RaylaneError
from raylane.cluster.messages import Job
from raylane.router.jobs import JobEvent


class Script:
    """A runner that replays job events (and then, optionally, raises)."""

    def __init__(self, events: Sequence[JobEvent], error: RaylaneError | None = None) -> None:
        self.events = events
        self.error = error

    async def run(self, jobs: Sequence[Job], model: ModelConfig, timeline: object = None
                  ) -> AsyncGenerator[tuple[int, JobEvent], None]:
        for event in self.events:
            yield 0, event
        if self.error is not None:
            raise self.error


async def named_events(stream: AsyncIterator[bytes], type_: Any) -> list[tuple[str, Any]]:
    """Each event of a stream as (its `event:` name, its data decoded as `type_`)."""
    out = []
    raw = b"".join([piece async for piece in stream]).decode()
    assert raw.endswith("\n\n")
    for event in raw.removesuffix("\n\n").split("\n\n"):
        head, data = event.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        out.append((head.removeprefix("event: "),
                    msgspec.json.decode(data.removeprefix("data: "), type=type_)))
    return out
