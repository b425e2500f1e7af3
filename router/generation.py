"""Turn a request's job events into an OpenAI answer: one JSON body, or an SSE stream.

Chat and text completions differ only in the shape of their objects (`Shape`, in
`shapes.py`, which also reads tool calls and renders log probabilities); collecting,
streaming, retry handling and usage accounting are shared here.

A stream's HTTP status is decided by its first event: errors that happen
before any text exists (queue full, deadline while queued, bad prompt) are
plain HTTP errors. Once text has reached the client, a lost worker ends the
stream with an explicit error event, never a duplicated or silently cut answer.
While the request waits in the queue, the stream sends its position as SSE
comments (`waiting.py`); the first one also begins the stream, so later errors
are error events too.

Every answer carries the request's `timings` (`timeline.py`), an extension field as
llama.cpp's server has one: in the whole body, and in a stream's usage chunk (with
`stream_options.include_usage`) or else its last chunk.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import RaylaneError
from raylane.cluster.messages import Done, Job
from raylane.router.errors import error_body
from raylane.router.event_streams import first_item, lost_after_output
from raylane.router.jobs import JobEvent, JobRunner, Restart, text_only
from raylane.router.shapes import ChoiceWriter, Shape
from raylane.router.timeline import Timeline
from raylane.router.waiting import Note

_json = msgspec.json.Encoder()


@dataclass
class _Choice:
    writer: ChoiceWriter
    sent: bool = False
    done: Done | None = None


@dataclass
class Generation:
    """One generation request in flight."""

    runner: JobRunner
    jobs: Sequence[Job]
    shape: Shape
    response_id: str
    model: ModelConfig
    include_usage: bool = False
    n: int = 1
    """Answers per prompt: jobs come in groups of `n` that share a prompt."""
    notes_every_s: float = 0.0
    """Seconds between queue-position comments while a stream waits (0: none)."""
    created: int = field(default_factory=lambda: int(time.time()))
    timeline: Timeline = field(default_factory=Timeline)

    async def collect(self) -> dict:
        """Wait for every choice and build the whole response."""
        choices = self._choices()
        async for index, job_event in self.runner.run(self.jobs, self.model, self.timeline):
            choice = choices[index]
            event = text_only(job_event)
            if isinstance(event, Restart):
                # nothing reached the client: retry transparently
                choice.writer = self.shape.choice(index)
                continue
            choice.writer.add(event)
            if isinstance(event, Done):
                choice.done = event
        body = self._head(self.shape.object_name)
        body["choices"] = [c.writer.final(_finish(c)) for c in choices]
        body["usage"] = _usage(choices, self.n)
        body["timings"] = self.timeline.timings()
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        """Start the stream; raises (as an HTTP error) if it fails before its first text or
        queue-position comment."""
        first, rest = await first_item(self.runner, self.jobs, self.model, self.timeline,
                                       self.notes_every_s)
        return self._sse(first, rest)

    async def _sse(
        self, first: tuple[int, JobEvent] | Note,
        rest: AsyncGenerator[tuple[int, JobEvent] | Note, None],
    ) -> AsyncIterator[bytes]:
        # The chunks of one event go out as one write: one message through the proxy.
        choices = self._choices()
        try:
            if chunks := self._items(choices, first):
                yield b"".join(chunks)
            async for item in rest:
                if chunks := self._items(choices, item):
                    yield b"".join(chunks)
        except RaylaneError as exc:
            yield _event(error_body(exc))
            return
        finally:
            await rest.aclose()
        end = b"data: [DONE]\n\n"
        if self.include_usage:
            body = self._head(self.shape.chunk_name)
            body["choices"] = []
            body["usage"] = _usage(choices, self.n)
            body["timings"] = self.timeline.timings()
            end = _event(body) + end
        yield end

    def _items(self, choices: list[_Choice], item: tuple[int, JobEvent] | Note) -> list[bytes]:
        if isinstance(item, Note):
            return [item.sse()]
        return self._chunks(choices, *item)

    def _chunks(self, choices: list[_Choice], index: int, job_event: JobEvent) -> list[bytes]:
        choice = choices[index]
        event = text_only(job_event)
        if isinstance(event, Restart):
            if choice.writer.started:
                raise lost_after_output()
            choice.writer = self.shape.choice(index)
            return []
        if isinstance(event, Done):
            choice.done = event
        parts = choice.writer.chunks(event, first=not choice.sent)
        choice.sent = choice.sent or bool(parts)
        last = len(parts) if isinstance(event, Done) and all(c.done for c in choices) else 0
        return [self._chunk(part, last=i + 1 == last) for i, part in enumerate(parts)]

    def _choices(self) -> list[_Choice]:
        return [_Choice(self.shape.choice(i)) for i in range(len(self.jobs))]

    def _chunk(self, choice: dict, last: bool = False) -> bytes:
        body = self._head(self.shape.chunk_name)
        body["choices"] = [choice]
        if self.include_usage:
            body["usage"] = None
        elif last:  # the stream's last chunk: no usage chunk follows to carry them
            body["timings"] = self.timeline.timings()
        return _event(body)

    def _head(self, object_name: str) -> dict[str, Any]:
        return {"id": self.response_id, "object": object_name, "created": self.created,
                "model": self.model.name, "system_fingerprint": None}



def _finish(choice: _Choice) -> str:
    return choice.done.finish_reason if choice.done else "stop"


def _usage(choices: list[_Choice], n: int) -> dict[str, int]:
    """Completion tokens of every choice; prompt tokens once per prompt, as OpenAI counts."""
    prompt = sum(c.done.prompt_tokens for c in choices[::n] if c.done)
    completion = sum(c.done.completion_tokens for c in choices if c.done)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _event(body: dict) -> bytes:
    return b"data: " + _json.encode(body) + b"\n\n"

