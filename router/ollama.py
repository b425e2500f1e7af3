"""The Ollama API's generation: requests to jobs, events to Ollama's answers and NDJSON lines.

`/api/chat` and `/api/generate` are one job each. A whole answer is one JSON
object; a stream is one JSON object per line (`application/x-ndjson`): a line
per piece of text with `"done": false`, then a last line with `"done": true`,
the `done_reason` and the token counts and durations (nanoseconds).

A chat request's `tools` are offered to the model as OpenAI's `tool_choice: auto` is
(`tools.py`), and its calls are read out of the answer the same way (`tool_calls.py`):
a whole answer carries them in `message.tool_calls`, a stream sends each call whole in
a line of its own, as Ollama does, with the arguments as a JSON object.

`format` constrains the answer as OpenAI's `response_format` does: "json" to one JSON
object, a JSON Schema to an answer that matches it.

With `logprobs: true` each line carries the log probabilities of the tokens of its
text in `logprobs` (a whole answer, all of them), as Ollama's do; a token whose text
is held back (a possible tool call) goes with the line that sends it.

As with the OpenAI API (`generation.py`): a stream's HTTP status is decided by
its first event, a worker lost before any text is retried unseen, and one lost
after text was sent ends the stream with an `{"error": ...}` line, never with
duplicated or silently cut text. Errors never pick an HTTP status here.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from raylane.cluster.config import Config, ModelConfig
from raylane.cluster.errors import InvalidRequest, JobLost, RaylaneError
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Job,
    Message,
    SamplingParams,
    TextPrompt,
    TokenLogprob,
    ToolCall,
)
from raylane.router.admission import Ticket
from raylane.router.errors import ollama_error_body
from raylane.router.jobs import JobEvent, JobRunner, Restart, text_only
from raylane.router.logprobs import ollama_logprobs
from raylane.router.ollama_protocol import (
    Generative,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaMessage,
    OllamaOptions,
    OllamaToolCall,
)
from raylane.router.protocol import EmbeddingRequest, Sampling
from raylane.router.requests import checked_schema, embedding_job, prompt_job, sampling
from raylane.router.timeline import Timeline
from raylane.router.tool_calls import (
    CallDelta,
    Reader,
    parsed_arguments,
    read_piece,
    tool_reader,
)
from raylane.router.tools import NO_TOOLS, ToolPlan, auto_plan

_json = msgspec.json.Encoder()

NEUTRAL_OPTIONS = {"typical_p": 1.0, "repeat_penalty": 1.0, "mirostat": 0}
"""Sampler options raylane accepts only at the value that switches them off."""


def served_name(config: Config, name: str) -> str:
    """`name` as the config knows it: Ollama clients may add the default tag `:latest`."""
    if config.model(name) is None and name.endswith(":latest"):
        return name.removesuffix(":latest")
    return name


def options_sampling(options: OllamaOptions | None, cap: int | None) -> SamplingParams:
    """The SamplingParams of Ollama `options`, checked as the OpenAI API checks its own."""
    o = options or OllamaOptions()
    for name, neutral in NEUTRAL_OPTIONS.items():
        value = getattr(o, name)
        if value is not None and value != neutral:
            raise InvalidRequest(f"options.{name} is not supported (raylane samples with "
                                 f"OpenAI's parameters); send {neutral} or leave it out.",
                                 param=f"options.{name}")
    if o.num_predict == 0:
        raise InvalidRequest("options.num_predict must be positive, or -1 for the model's "
                             "limit.", param="options.num_predict")
    max_tokens = o.num_predict if o.num_predict and o.num_predict > 0 else None
    if cap is not None and max_tokens is not None and max_tokens > cap:
        raise InvalidRequest(f"options.num_predict is {max_tokens}, more than the {cap} this "
                             "model allows per request.", param="options.num_predict")
    req = Sampling(model="", temperature=o.temperature, top_p=o.top_p, top_k=o.top_k,
                   min_p=o.min_p, stop=o.stop,
                   seed=o.seed, presence_penalty=o.presence_penalty,
                   frequency_penalty=o.frequency_penalty)
    return sampling(req, max_tokens, cap)


def chat_tools(req: OllamaChatRequest) -> ToolPlan:
    """What the model is offered of the request's `tools` (checked)."""
    return auto_plan(req.tools or [])


def chat_job(req: OllamaChatRequest, ticket: Ticket, reply_to: str,
             tools: ToolPlan = NO_TOOLS) -> Job:
    """The job of an `/api/chat` request offering the model `tools` (`chat_tools`)."""
    messages = [_message(m, i) for i, m in enumerate(req.messages)]
    params = _generative_sampling(req, ticket)
    prompt = ChatPrompt(messages=messages, tools=tools.tools)
    return prompt_job(ticket, "chat", prompt, params, reply_to)


def generate_job(req: OllamaGenerateRequest, ticket: Ticket, reply_to: str) -> Job:
    """The job of an `/api/generate` request: the prompt as a user turn, or `raw` as it is."""
    for name in ("suffix", "template", "context", "images", "width", "height", "steps"):
        _refuse(bool(getattr(req, name)), name, f"{name} is not supported.")
    params = _generative_sampling(req, ticket)
    if req.raw:
        _refuse(bool(req.system), "system", "system does not apply to a raw prompt.")
        return prompt_job(ticket, "completion", TextPrompt(req.prompt), params, reply_to)
    messages = [Message(role="system", content=req.system)] if req.system else []
    messages.append(Message(role="user", content=req.prompt))
    return prompt_job(ticket, "chat", ChatPrompt(messages=messages), params, reply_to)


def embed_job(inputs: str | list[str], dimensions: int | None, ticket: Ticket,
              reply_to: str) -> Job:
    """The job of an `/api/embed` (or legacy `/api/embeddings`) request."""
    texts: list[str | int | list[int]] = [inputs] if isinstance(inputs, str) else [*inputs]
    req = EmbeddingRequest(model=ticket.model.name, input=texts, dimensions=dimensions)
    return embedding_job(req, ticket, reply_to)


def _generative_sampling(req: Generative, ticket: Ticket) -> SamplingParams:
    """The sampling of a chat or generate request, with the log probabilities it asks for."""
    _refuse(req.think not in (None, False), "think", "Thinking is not supported by the "
            "served models; send false or leave it out.")
    _refuse(bool(req.top_logprobs) and not req.logprobs, "top_logprobs",
            "top_logprobs needs logprobs: true.")
    params = options_sampling(req.options, ticket.model.max_tokens)
    top = (req.top_logprobs or 0) if req.logprobs else None
    params = msgspec.structs.replace(params, logprobs=top)
    if req.format == "json":
        return msgspec.structs.replace(params, json_object=True)
    if isinstance(req.format, dict):
        return msgspec.structs.replace(params, json_schema=checked_schema(req.format, "format"))
    _refuse(req.format not in (None, ""), "format",
            'format is "json" (one JSON object) or a JSON Schema the answer must match.')
    return params


def _message(m: OllamaMessage, index: int) -> Message:
    where = f"messages[{index}]"
    _refuse(bool(m.images), f"{where}.images", "Images are not supported.")
    _refuse(bool(m.thinking), f"{where}.thinking", "Thinking is not supported.")
    _refuse(bool(m.tool_calls) and m.role != "assistant", f"{where}.tool_calls",
            "Only assistant messages make tool calls.")
    calls = [_call(c, f"{index}_{j}") for j, c in enumerate(m.tool_calls or [])]
    return Message(role=m.role, content=m.content, name=m.tool_name, tool_calls=calls)


def _call(c: OllamaToolCall, number: str) -> ToolCall:
    return ToolCall(id=c.id or f"call_{number}", name=c.function.name,
                    arguments=json.dumps(c.function.arguments))


def _refuse(condition: bool, param: str, message: str) -> None:
    if condition:
        raise InvalidRequest(message, param=param)


def created_at() -> str:
    """Now, as Ollama writes times (RFC 3339, UTC)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Progress:
    reader: Reader | None
    """What reads tool calls out of the text; None without tools."""
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """Of the tokens whose text no line carried yet (of all of them, for a whole answer)."""
    sent: bool = False
    first: float | None = None
    """When the first text (or the end) came: the prompt was read by then."""

    def read(self, text: str, end: bool) -> tuple[str, list[CallDelta]]:
        """The content and the whole calls in `text`, the next piece of the answer."""
        return read_piece(self.reader, text, end)

    def add(self, event: Delta | Done) -> None:
        self.text.append(event.text)
        self.logprobs.extend(event.logprobs or [])

    def restart(self) -> None:
        """Forget what a lost attempt made."""
        self.text.clear()
        self.logprobs.clear()

    def take(self) -> list[TokenLogprob]:
        items, self.logprobs = self.logprobs, []
        return items


@dataclass
class OllamaGeneration:
    """One `/api/chat` (`chat`) or `/api/generate` request in flight."""

    runner: JobRunner
    job: Job
    model: ModelConfig
    name: str
    """The model as the request named it; Ollama echoes it."""
    chat: bool
    tools: ToolPlan = NO_TOOLS
    started: float = field(default_factory=time.monotonic)
    timeline: Timeline = field(default_factory=Timeline)

    async def collect(self) -> dict:
        """Wait for the whole answer."""
        progress = _Progress(self._reader())
        async for _, job_event in self.runner.run([self.job], self.model, self.timeline):
            event = text_only(job_event)
            if isinstance(event, Restart):
                progress.restart()  # nothing reached the client: retry transparently
                continue
            progress.first = progress.first or time.monotonic()
            progress.add(event)
            if isinstance(event, Done):
                content, calls = progress.read("".join(progress.text), end=True)
                return self._final(event, content, progress, calls)
        raise JobLost("The job ended without an answer.")

    def _reader(self) -> Reader | None:
        return tool_reader(self.tools) if self.chat else None

    async def stream(self) -> AsyncIterator[bytes]:
        """Start the stream; raises (as an HTTP error) if it fails before any text."""
        events = self.runner.run([self.job], self.model, self.timeline)
        first = await anext(events)
        return self._lines(first[1], events)

    async def _lines(
        self, first: JobEvent, rest: AsyncGenerator[tuple[int, JobEvent], None]
    ) -> AsyncIterator[bytes]:
        progress = _Progress(self._reader())
        try:
            if lines := self._step(progress, first):
                yield b"".join(lines)
            async for _, event in rest:
                if lines := self._step(progress, event):
                    yield b"".join(lines)
        except RaylaneError as exc:
            yield _line(ollama_error_body(exc))
        finally:
            await rest.aclose()

    def _step(self, progress: _Progress, job_event: JobEvent) -> list[bytes]:
        event = text_only(job_event)
        if isinstance(event, Restart):
            if progress.sent:
                raise JobLost("The worker generating this response was lost after part of it "
                              "was sent; the response is incomplete. Retry the request.")
            progress.reader = self._reader()  # what it held back goes with the lost attempt
            progress.restart()
            return []
        progress.first = progress.first or time.monotonic()
        progress.logprobs.extend(event.logprobs or [])
        content, calls = progress.read(event.text, end=isinstance(event, Done))
        out = []
        if content or calls:
            progress.sent = True
            out.append(_line(self._piece(content, calls, progress.take())))
        if isinstance(event, Done):
            out.append(_line(self._final(event, "", progress)))
        return out

    def _piece(self, text: str, calls: list[CallDelta] | None = None,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        """A line of the answer; `logprobs` are those of the tokens of its text (Ollama
        leaves the field out when there are none)."""
        body: dict[str, Any] = {"model": self.name, "created_at": created_at()}
        if self.chat:
            body["message"] = {"role": "assistant", "content": text}
            if calls:
                body["message"]["tool_calls"] = [_tool_call(c) for c in calls]
        else:
            body["response"] = text
        body["done"] = False
        if logprobs:
            body["logprobs"] = ollama_logprobs(logprobs)
        return body

    def _final(self, done: Done, text: str, progress: _Progress,
               calls: list[CallDelta] | None = None) -> dict[str, Any]:
        now = time.monotonic()
        first = progress.first or now
        body = self._piece(text, calls, progress.take())
        body.update(done=True, done_reason=done.finish_reason,
                    total_duration=_ns(now - self.started), load_duration=0,
                    prompt_eval_count=done.prompt_tokens,
                    prompt_eval_duration=_ns(first - self.started),
                    eval_count=done.completion_tokens, eval_duration=_ns(now - first))
        return body


def loaded(name: str, chat: bool) -> dict[str, Any]:
    """The answer to an empty prompt or conversation: Ollama's way to load a model."""
    body: dict[str, Any] = {"model": name, "created_at": created_at()}
    if chat:
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    body.update(done=True, done_reason="load")
    return body


def _tool_call(call: CallDelta) -> dict[str, Any]:
    """A whole call as Ollama sends it: the arguments as an object (as the model wrote
    them when they are not one)."""
    return {"id": call.id, "function": {"index": call.index, "name": call.name,
                                        "arguments": parsed_arguments(call.arguments)}}



def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def _line(body: dict) -> bytes:
    return _json.encode(body) + b"\n"
