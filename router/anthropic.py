"""Turn a Messages request's job events into an Anthropic answer: a `message`, or its events.

The stream is the event sequence Anthropic sends, each as `event: <name>` and
`data: <json>`: `message_start`, `content_block_start`, `ping`, one
`content_block_delta` per piece of text, `content_block_stop`, `message_delta`
(stop reason and usage) and `message_stop`. As on the OpenAI routes
(`generation.py`), a stream's HTTP status is decided by its first job event; a
retried job before any text is invisible, and once text was sent a failure ends
the stream with an `error` event, never with duplicated text.

With tools, the answer is read for calls as on the OpenAI routes (`tool_calls.py`): a
whole message has a `text` block (when there is text, or nothing else) and a
`tool_use` block per call, its `input` an object, and stops with `tool_use`; a stream
opens each block when its first piece comes, and sends a call's input as
`input_json_delta` pieces (a forced call's as the model writes it, an `auto` call's
whole once its tags close). Without tools the text block opens with the stream.

Token counts come with the job's `Done`, after the text: `message_start` reports
zero usage and `message_delta` the real `input_tokens` and `output_tokens`
(the SDK's accumulated message takes both from there).

While the request waits in the queue, SSE comments tell its position (`waiting.py`);
the first one begins the stream, and `message_start` follows it at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import JobLost
from raylane.cluster.messages import Done, Job
from raylane.router.errors import anthropic_error_body
from raylane.router.event_streams import (
    first_item,
    lost_after_output,
    named_events,
    whole_text,
)
from raylane.router.jobs import JobEvent, JobRunner, Restart, text_only
from raylane.router.timeline import Timeline
from raylane.router.tool_calls import (
    CallDelta,
    Reader,
    parsed_arguments,
    read_piece,
    tool_reader,
    whole_calls,
)
from raylane.router.tools import NO_TOOLS, ToolPlan

_json = msgspec.json.Encoder()


def stop_reason(done: Done, called: bool = False) -> tuple[str, str | None]:
    """Anthropic's `stop_reason` and `stop_sequence` for how a job finished (`called`: the
    answer made tool calls)."""
    if done.finish_reason == "length":
        return "max_tokens", None
    if called:
        return "tool_use", None
    if done.stop is not None:
        return "stop_sequence", done.stop
    return "end_turn", None


def message_id(request_id: str) -> str:
    """The `msg_…` id of the request admission named `msg-…`."""
    return "msg_" + request_id.removeprefix("msg-")


def tool_use_id(call_id: str) -> str:
    """A call's `toolu_…` id, from the `call_…` one the reader gave it."""
    return "toolu_" + call_id.removeprefix("call_")


def tool_use(call: dict[str, Any]) -> dict[str, Any]:
    """A `tool_use` block of a whole call (`whole_calls`): its input an object, or the
    text the model wrote when that is not one."""
    return {"type": "tool_use", "id": tool_use_id(call["id"]), "name": call["function"]["name"],
            "input": parsed_arguments(call["function"]["arguments"])}


@dataclass
class _Sent:
    """How far a stream got."""

    started: bool = False
    """Some of the answer went out: a lost worker can no longer be retried unseen."""
    done: Done | None = None
    reader: Reader | None = None
    blocks: int = 0
    """Content blocks opened so far; the last is open until the next opens or the end."""
    open: Literal["text", "tool_use"] | None = None


@dataclass
class MessageRun:
    """One Messages request in flight: a single chat job."""

    runner: JobRunner
    job: Job
    model: ModelConfig
    id: str
    tools: ToolPlan = NO_TOOLS
    sent: _Sent = field(default_factory=_Sent)
    notes_every_s: float = 0.0
    """Seconds between queue-position comments while a stream waits (0: none)."""
    timeline: Timeline = field(default_factory=Timeline)

    async def collect(self) -> dict[str, Any]:
        """Wait for the answer and build the whole `message`."""
        text, done = await whole_text(self.runner, self.job, self.model, self.timeline)
        content, calls = read_piece(tool_reader(self.tools), text, end=True)
        blocks = [{"type": "text", "text": content}] if content or not calls else []
        blocks += [tool_use(c) for c in whole_calls(calls)]
        return self._message(blocks, done, bool(calls))

    async def stream(self) -> AsyncIterator[bytes]:
        """Start the stream; raises (as an HTTP error) if it fails before its first event or
        queue-position comment."""
        first, rest = await first_item(self.runner, [self.job], self.model, self.timeline,
                                       self.notes_every_s)
        self.sent.reader = tool_reader(self.tools)
        opening = [sse("message_start", {"type": "message_start",
                                         "message": self._message([], None)})]
        if self.sent.reader is None:
            opening += self._open("text")
        opening.append(sse("ping", {"type": "ping"}))
        return named_events(first, rest, opening=opening, events=self._events,
                            failed=lambda exc: sse("error", anthropic_error_body(exc)),
                            closing=self._closing)

    def _events(self, job_event: JobEvent) -> list[bytes]:
        event = text_only(job_event)
        sent = self.sent
        if isinstance(event, Restart):
            if sent.started:
                raise lost_after_output()
            sent.reader = tool_reader(self.tools)  # what it held back goes with the attempt
            return []
        if isinstance(event, Done):
            sent.done = event
        content, calls = read_piece(sent.reader, event.text, isinstance(event, Done))
        out = []
        if content:
            out += self._open("text")
            out.append(self._delta({"type": "text_delta", "text": content}))
        for call in calls:
            if call.id is not None:
                out += self._open("tool_use", call)
            if call.arguments:
                out.append(self._delta({"type": "input_json_delta",
                                        "partial_json": call.arguments}))
        sent.started = sent.started or bool(out)
        return out

    def _open(self, kind: Literal["text", "tool_use"], call: CallDelta | None = None
              ) -> list[bytes]:
        """The events that close the open block and open one of `kind` (none when text
        goes on in the open text block)."""
        if kind == "text" and self.sent.open == "text":
            return []
        out = self._close_block()
        block: dict[str, Any] = {"type": "text", "text": ""}
        if call is not None:
            block = {"type": "tool_use", "id": tool_use_id(call.id or ""), "name": call.name,
                     "input": {}}
        out.append(sse("content_block_start", {"type": "content_block_start",
                                               "index": self.sent.blocks,
                                               "content_block": block}))
        self.sent.blocks += 1
        self.sent.open = kind
        return out

    def _close_block(self) -> list[bytes]:
        if self.sent.open is None:
            return []
        self.sent.open = None
        return [sse("content_block_stop", {"type": "content_block_stop",
                                           "index": self.sent.blocks - 1})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta",
                                           "index": self.sent.blocks - 1, "delta": delta})

    def _closing(self) -> list[bytes]:
        done = self.sent.done
        if done is None:
            return [sse("error", anthropic_error_body(JobLost("The job ended without an answer.")))]
        called = self.sent.reader is not None and self.sent.reader.calls > 0
        reason, sequence = stop_reason(done, called)
        usage = {"input_tokens": done.prompt_tokens, "output_tokens": done.completion_tokens}
        blocks = [] if self.sent.blocks else self._open("text")  # an empty answer: one block
        return [
            *blocks,
            *self._close_block(),
            sse("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                  "usage": usage}),
            sse("message_stop", {"type": "message_stop"}),
        ]

    def _message(self, content: list[dict[str, Any]], done: Done | None,
                 called: bool = False) -> dict[str, Any]:
        reason, sequence = stop_reason(done, called) if done else (None, None)
        usage = {"input_tokens": done.prompt_tokens if done else 0,
                 "output_tokens": done.completion_tokens if done else 0}
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model.name,
                "content": content, "stop_reason": reason, "stop_sequence": sequence,
                "usage": usage}


def sse(name: str, body: dict[str, Any]) -> bytes:
    """One server-sent event as Anthropic names and shapes it."""
    return b"event: " + name.encode() + b"\ndata: " + _json.encode(body) + b"\n\n"
