"""Turn a Responses request's job events into OpenAI's answer: a `response`, or its events.

The answer's `output` is a list of items: a `message` (its text as one `output_text`
part) when there is text, or nothing else, and a `function_call` item per tool call
(read out of the text as on the chat API, `tool_calls.py`). A response cut by
`max_output_tokens` has status `incomplete` (`incomplete_details.reason`
`max_output_tokens`), its items too.

The stream is the event sequence OpenAI sends, each as `event: <type>` and
`data: <json>` with a `sequence_number`: `response.created`, `response.in_progress`;
per item `response.output_item.added`, then for a message `response.content_part.added`,
`response.output_text.delta` per piece, `response.output_text.done`,
`response.content_part.done`, and for a call `response.function_call_arguments.delta`
per piece and `response.function_call_arguments.done`; `response.output_item.done`; and
last `response.completed` (or `response.incomplete`) with the whole response. As on the
other routes, a stream's HTTP status is decided by its first job event, a retried job
before any output is invisible, and a failure after output went out ends the stream
with an `error` event. While the request waits in the queue, SSE comments tell its
position (`waiting.py`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import JobLost, RaylaneError
from raylane.cluster.messages import Done, Job
from raylane.router.event_streams import (
    first_item,
    lost_after_output,
    named_events,
    whole_text,
)
from raylane.router.jobs import JobEvent, JobRunner, Restart, text_only
from raylane.router.responses_protocol import (
    FunctionChoice,
    JsonObjectFormat,
    JsonSchemaText,
    ResponsesRequest,
    function_tools,
)
from raylane.router.timeline import Timeline
from raylane.router.tool_calls import CallDelta, Reader, read_piece, tool_reader, whole_calls
from raylane.router.tools import NO_TOOLS, ToolPlan

_json = msgspec.json.Encoder()


def response_id(request_id: str) -> str:
    """The `resp_…` id of the request admission named `resp-…`."""
    return "resp_" + request_id.removeprefix("resp-")


@dataclass
class _Item:
    """An output item: a message's text, or a call's arguments, as far as they came."""

    kind: Literal["message", "function_call"]
    index: int
    id: str
    text: str = ""
    call_id: str = ""
    name: str = ""

    def body(self, status: str) -> dict[str, Any]:
        if self.kind == "function_call":
            return {"id": self.id, "type": "function_call", "status": status,
                    "call_id": self.call_id, "name": self.name, "arguments": self.text}
        content = [] if status == "in_progress" else [_text_part(self.text)]
        return {"id": self.id, "type": "message", "status": status, "role": "assistant",
                "content": content}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class ResponseRun:
    """One Responses request in flight: a single chat job."""

    runner: JobRunner
    job: Job
    model: ModelConfig
    id: str
    request: ResponsesRequest
    tools: ToolPlan = NO_TOOLS
    notes_every_s: float = 0.0
    """Seconds between queue-position comments while a stream waits (0: none)."""
    timeline: Timeline = field(default_factory=Timeline)
    created: int = field(default_factory=lambda: int(time.time()))
    _items: list[_Item] = field(default_factory=list)
    _open: _Item | None = None
    _reader: Reader | None = None
    _seq: int = 0
    _done: Done | None = None

    async def collect(self) -> dict[str, Any]:
        """Wait for the answer and build the whole `response`."""
        text, done = await whole_text(self.runner, self.job, self.model, self.timeline)
        content, calls = read_piece(tool_reader(self.tools), text, end=True)
        items = [_Item("message", 0, _new_id("msg"), content)] if content or not calls else []
        for call in whole_calls(calls):
            function = call["function"]
            items.append(_Item("function_call", len(items), _new_id("fc"), function["arguments"],
                               call["id"], function["name"]))
        status = _status(done)
        return self._response(status, [item.body(status) for item in items], done)

    async def stream(self) -> AsyncIterator[bytes]:
        """Start the stream; raises (as an HTTP error) if it fails before its first event or
        queue-position comment."""
        first, rest = await first_item(self.runner, [self.job], self.model, self.timeline,
                                       self.notes_every_s)
        self._reader = tool_reader(self.tools)
        started = self._response("in_progress", [], None)
        opening = [self._event("response.created", response=started),
                   self._event("response.in_progress", response=started)]
        return named_events(first, rest, opening=opening, events=self._events,
                            failed=self._failed, closing=self._closing)

    def _failed(self, exc: RaylaneError) -> bytes:
        return self._event("error", code=exc.code or exc.type, message=exc.message,
                           param=exc.param)

    def _events(self, job_event: JobEvent) -> list[bytes]:
        event = text_only(job_event)
        if isinstance(event, Restart):
            if self._items:
                raise lost_after_output()
            self._reader = tool_reader(self.tools)  # what it held back goes with the attempt
            return []
        if isinstance(event, Done):
            self._done = event
        content, calls = read_piece(self._reader, event.text, isinstance(event, Done))
        out = []
        if content:
            if self._open is None or self._open.kind != "message":
                out += self._begin("message")
            out.append(self._delta(content))
        for call in calls:
            if call.id is not None:
                out += self._begin("function_call", call)
            if call.arguments:
                out.append(self._delta(call.arguments))
        return out

    def _begin(self, kind: Literal["message", "function_call"], call: CallDelta | None = None
               ) -> list[bytes]:
        """The events that end the open item and begin one of `kind`."""
        out = self._end("completed")
        item = _Item(kind, len(self._items), _new_id("msg" if call is None else "fc"))
        if call is not None:
            item.call_id, item.name = call.id or "", call.name or ""
        self._items.append(item)
        self._open = item
        out.append(self._event("response.output_item.added", output_index=item.index,
                               item=item.body("in_progress")))
        if kind == "message":
            out.append(self._event("response.content_part.added", item_id=item.id,
                                   output_index=item.index, content_index=0,
                                   part=_text_part("")))
        return out

    def _delta(self, text: str) -> bytes:
        item = self._open
        assert item is not None
        item.text += text
        if item.kind == "message":
            return self._event("response.output_text.delta", item_id=item.id,
                               output_index=item.index, content_index=0, delta=text,
                               logprobs=[])
        return self._event("response.function_call_arguments.delta", item_id=item.id,
                           output_index=item.index, delta=text)

    def _end(self, status: str) -> list[bytes]:
        """The events that end the open item, if any."""
        item, self._open = self._open, None
        if item is None:
            return []
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "message":
            out = [self._event("response.output_text.done", **where, content_index=0,
                               text=item.text, logprobs=[]),
                   self._event("response.content_part.done", **where, content_index=0,
                               part=_text_part(item.text))]
        else:
            out = [self._event("response.function_call_arguments.done", **where,
                               name=item.name, arguments=item.text)]
        out.append(self._event("response.output_item.done", output_index=item.index,
                               item=item.body(status)))
        return out

    def _closing(self) -> list[bytes]:
        done = self._done
        if done is None:
            return [self._failed(JobLost("The job ended without an answer."))]
        status = _status(done)
        out = [] if self._items else self._begin("message")  # an empty answer: one message
        out += self._end(status)
        response = self._response(status, [item.body(status) for item in self._items], done)
        name = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(name, response=response))
        return out

    def _event(self, kind: str, /, **body: Any) -> bytes:
        """One server-sent event as OpenAI names and shapes it, numbered."""
        data = {"type": kind, "sequence_number": self._seq, **body}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"

    def _response(self, status: str, output: list[dict[str, Any]],
                  done: Done | None) -> dict[str, Any]:
        req = self.request
        usage = None
        if done is not None:
            usage = {"input_tokens": done.prompt_tokens,
                     "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": done.completion_tokens,
                     "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": done.prompt_tokens + done.completion_tokens}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "error": None,
            "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete"
                                   else None),
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "model": self.model.name, "output": output,
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": 1.0 if req.temperature is None else req.temperature,
            "text": {"format": _format(req)}, "tool_choice": _tool_choice(req),
            "tools": [msgspec.to_builtins(t) for t in function_tools(req)],
            "top_p": 1.0 if req.top_p is None else req.top_p, "truncation": "disabled",
            "usage": usage, "user": req.user, "metadata": req.metadata or {},
        }


def _status(done: Done) -> str:
    return "incomplete" if done.finish_reason == "length" else "completed"


def _format(req: ResponsesRequest) -> dict[str, Any]:
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, JsonObjectFormat | JsonSchemaText):
        return msgspec.to_builtins(fmt)
    return {"type": "text"}


def _tool_choice(req: ResponsesRequest) -> str | dict[str, Any]:
    choice = req.tool_choice
    if isinstance(choice, FunctionChoice):
        return msgspec.to_builtins(choice)
    return choice or "auto"
