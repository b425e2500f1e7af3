"""Turn a request's job events into an OpenAI answer: one JSON body, or an SSE stream.

Chat and text completions differ only in the shape of their objects (`Shape`);
collecting, streaming, retry handling and usage accounting are shared here.

A stream's HTTP status is decided by its first event: errors that happen
before any text exists (queue full, deadline while queued, bad prompt) are
plain HTTP errors. Once text has reached the client, a lost worker ends the
stream with an explicit error event, never a duplicated or silently cut answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from raylane.cluster.config import ModelConfig
from raylane.cluster.errors import EngineError, JobLost, RaylaneError
from raylane.cluster.messages import Delta, Done, Embeddings, Job
from raylane.router.errors import error_body
from raylane.router.jobs import JobEvent, JobRunner, Restart

_json = msgspec.json.Encoder()


class Shape(Protocol):
    object_name: str
    chunk_name: str

    def chunk_choice(self, index: int, text: str, first: bool, finish: str | None) -> dict: ...

    def final_choice(self, index: int, text: str, finish: str) -> dict: ...


class ChatShape:
    object_name = "chat.completion"
    chunk_name = "chat.completion.chunk"

    def chunk_choice(self, index: int, text: str, first: bool, finish: str | None) -> dict:
        delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {}
        if text and not first:
            delta["content"] = text
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def final_choice(self, index: int, text: str, finish: str) -> dict:
        message = {"role": "assistant", "content": text, "refusal": None}
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


class CompletionShape:
    object_name = "text_completion"
    chunk_name = "text_completion"

    def chunk_choice(self, index: int, text: str, first: bool, finish: str | None) -> dict:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}

    def final_choice(self, index: int, text: str, finish: str) -> dict:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    sent: bool = False
    done: Done | None = None


@dataclass
class Generation:
    """One generation request in flight."""

    runner: JobRunner
    jobs: Sequence[Job]
    shape: Shape
    request_id: str
    model: ModelConfig
    include_usage: bool = False
    n: int = 1
    """Answers per prompt: jobs come in groups of `n` that share a prompt."""
    created: int = field(default_factory=lambda: int(time.time()))

    async def collect(self) -> dict:
        """Wait for every choice and build the whole response."""
        choices = [_Choice() for _ in self.jobs]
        async for index, job_event in self.runner.run(self.jobs, self.model):
            choice = choices[index]
            event = _text_only(job_event)
            if isinstance(event, Restart):
                choice.text.clear()  # nothing reached the client: retry transparently
            elif isinstance(event, Delta):
                choice.text.append(event.text)
            else:
                choice.text.append(event.text)
                choice.done = event
        body = self._head(self.shape.object_name)
        body["choices"] = [
            self.shape.final_choice(i, "".join(c.text), _finish(c)) for i, c in enumerate(choices)
        ]
        body["usage"] = _usage(choices, self.n)
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        """Start the stream; raises (as an HTTP error) if it fails before any text."""
        events = self.runner.run(self.jobs, self.model)
        first = await anext(events)
        return self._sse(first, events)

    async def _sse(
        self, first: tuple[int, JobEvent], rest: AsyncGenerator[tuple[int, JobEvent], None]
    ) -> AsyncIterator[bytes]:
        choices = [_Choice() for _ in self.jobs]
        try:
            for chunk in self._chunks(choices, *first):
                yield chunk
            async for index, event in rest:
                for chunk in self._chunks(choices, index, event):
                    yield chunk
        except RaylaneError as exc:
            yield _event(error_body(exc))
            return
        finally:
            await rest.aclose()
        if self.include_usage:
            body = self._head(self.shape.chunk_name)
            body["choices"] = []
            body["usage"] = _usage(choices, self.n)
            yield _event(body)
        yield b"data: [DONE]\n\n"

    def _chunks(self, choices: list[_Choice], index: int, job_event: JobEvent) -> list[bytes]:
        choice = choices[index]
        event = _text_only(job_event)
        if isinstance(event, Restart):
            if any(choice.text):
                raise JobLost(
                    "The worker generating this response was lost after part of it was "
                    "sent; the response is incomplete. Retry the request."
                )
            return []
        out = []
        text = event.text
        finish = None
        if isinstance(event, Done):
            choice.done = event
            finish = event.finish_reason
        if text or not choice.sent:
            choice.text.append(text)
            out.append(self._chunk(index, text, not choice.sent, None))
            choice.sent = True
        if finish is not None:
            out.append(self._chunk(index, "", False, finish))
        return out

    def _chunk(self, index: int, text: str, first: bool, finish: str | None) -> bytes:
        body = self._head(self.shape.chunk_name)
        body["choices"] = [self.shape.chunk_choice(index, text, first, finish)]
        if self.include_usage:
            body["usage"] = None
        return _event(body)

    def _head(self, object_name: str) -> dict[str, Any]:
        return {"id": self.request_id, "object": object_name, "created": self.created,
                "model": self.model.name, "system_fingerprint": None}


def _text_only(event: JobEvent) -> Delta | Done | Restart:
    if isinstance(event, Embeddings):  # a worker out of step with this router's contract
        raise EngineError("A worker answered a completion request with embeddings.")
    return event


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

