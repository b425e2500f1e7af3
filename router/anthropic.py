"""Turn a Messages request's job events into an Anthropic answer: a `message`, or its events.

The stream is the event sequence Anthropic sends, each as `event: <name>` and
`data: <json>`: `message_start`, `content_block_start`, `ping`, one
`content_block_delta` per piece of text, `content_block_stop`, `message_delta`
(stop reason and usage) and `message_stop`. As on the OpenAI routes
(`generation.py`), a stream's HTTP status is decided by its first job event; a
retried job before any text is invisible, and once text was sent a failure ends
the stream with an `error` event, never with duplicated text.

Token counts come with the job's `Done`, after the text: `message_start` reports
zero usage and `message_delta` the real `input_tokens` and `output_tokens`
(the SDK's accumulated message takes both from there).

While the request waits in the queue, SSE comments tell its position (`waiting.py`);
the first one begins the stream, and `message_start` follows it at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import EngineError, JobLost, RaylaneError
from raylane.cluster.messages import Delta, Done, Job
from raylane.router.errors import anthropic_error_body
from raylane.router.jobs import JobEvent, JobRunner, Restart
from raylane.router.timeline import Timeline
from raylane.router.waiting import Note, queue_notes

_json = msgspec.json.Encoder()


def stop_reason(done: Done) -> tuple[str, str | None]:
    """Anthropic's `stop_reason` and `stop_sequence` for how a job finished."""
    if done.finish_reason == "length":
        return "max_tokens", None
    if done.stop is not None:
        return "stop_sequence", done.stop
    return "end_turn", None


def message_id(request_id: str) -> str:
    """The `msg_…` id of the request admission named `msg-…`."""
    return "msg_" + request_id.removeprefix("msg-")


@dataclass
class _Sent:
    text: bool = False
    done: Done | None = None


@dataclass
class MessageRun:
    """One Messages request in flight: a single chat job."""

    runner: JobRunner
    job: Job
    model: ModelConfig
    id: str
    sent: _Sent = field(default_factory=_Sent)
    notes_every_s: float = 0.0
    """Seconds between queue-position comments while a stream waits (0: none)."""
    timeline: Timeline = field(default_factory=Timeline)

    async def collect(self) -> dict[str, Any]:
        """Wait for the answer and build the whole `message`."""
        text: list[str] = []
        done: Done | None = None
        async for _, job_event in self.runner.run([self.job], self.model, self.timeline):
            event = _text_only(job_event)
            if isinstance(event, Restart):
                text.clear()  # nothing reached the client: retry transparently
                continue
            text.append(event.text)
            if isinstance(event, Done):
                done = event
        if done is None:
            raise JobLost("The job ended without an answer.")
        return self._message([{"type": "text", "text": "".join(text)}], done)

    async def stream(self) -> AsyncIterator[bytes]:
        """Start the stream; raises (as an HTTP error) if it fails before its first event or
        queue-position comment."""
        events = queue_notes(self.runner.run([self.job], self.model, self.timeline),
                             self.runner, [self.job], self.timeline, self.notes_every_s)
        first = await anext(events)
        return self._sse(first, events)

    async def _sse(
        self, first: tuple[int, JobEvent] | Note,
        rest: AsyncGenerator[tuple[int, JobEvent] | Note, None],
    ) -> AsyncIterator[bytes]:
        # The events of one job event go out as one write: one message through the proxy.
        head = [first.sse()] if isinstance(first, Note) else []
        head += [
            sse("message_start", {"type": "message_start", "message": self._message([], None)}),
            sse("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}),
            sse("ping", {"type": "ping"}),
        ]
        try:
            if not isinstance(first, Note):
                head += self._events(first[1])
            yield b"".join(head)
            head = []
            async for item in rest:
                if chunks := [item.sse()] if isinstance(item, Note) else self._events(item[1]):
                    yield b"".join(chunks)
        except RaylaneError as exc:
            yield b"".join(head) + sse("error", anthropic_error_body(exc))
            return
        finally:
            await rest.aclose()
        yield b"".join(self._closing())

    def _events(self, job_event: JobEvent) -> list[bytes]:
        event = _text_only(job_event)
        if isinstance(event, Restart):
            if self.sent.text:
                raise JobLost("The worker generating this response was lost after part of it "
                              "was sent; the response is incomplete. Retry the request.")
            return []
        if isinstance(event, Done):
            self.sent.done = event
        if not event.text:
            return []
        self.sent.text = True
        return [sse("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": event.text}})]

    def _closing(self) -> list[bytes]:
        done = self.sent.done
        if done is None:
            return [sse("error", anthropic_error_body(JobLost("The job ended without an answer.")))]
        reason, sequence = stop_reason(done)
        usage = {"input_tokens": done.prompt_tokens, "output_tokens": done.completion_tokens}
        return [
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                  "usage": usage}),
            sse("message_stop", {"type": "message_stop"}),
        ]

    def _message(self, content: list[dict[str, str]], done: Done | None) -> dict[str, Any]:
        reason, sequence = stop_reason(done) if done else (None, None)
        usage = {"input_tokens": done.prompt_tokens if done else 0,
                 "output_tokens": done.completion_tokens if done else 0}
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model.name,
                "content": content, "stop_reason": reason, "stop_sequence": sequence,
                "usage": usage}


def _text_only(event: JobEvent) -> Delta | Done | Restart:
    if not isinstance(event, Delta | Done | Restart):  # a worker out of step with the contract
        raise EngineError("A worker answered a message request with embeddings.")
    return event


def sse(name: str, body: dict[str, Any]) -> bytes:
    """One server-sent event as Anthropic names and shapes it."""
    return b"event: " + name.encode() + b"\ndata: " + _json.encode(body) + b"\n\n"
