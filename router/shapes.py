"""The OpenAI objects of chat and text completions, choice by choice.

A `Shape` makes one writer per choice. The writer takes the choice's job events and
builds either the whole choice (`add` each event, then `final`) or the choice of each
stream chunk (`chunks` per event). Both go through the same steps: the text, its tool
calls (`tool_calls.py`) and its log probabilities (`logprobs.py`), so a stream and a
whole response carry the same values. In a stream, log probabilities travel in the
first chunk that goes out after their tokens arrived; text a tool-call reader holds
back keeps its log probabilities waiting with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from raylane.cluster.messages import Delta, Done, TokenLogprob
from raylane.router.logprobs import Offsets, chat_logprobs, completion_logprobs
from raylane.router.tool_calls import CallDelta, read_all, read_piece, tool_reader, whole_calls
from raylane.router.tools import NO_TOOLS, ToolPlan


class ChoiceWriter(Protocol):
    started: bool
    """Whether text or a tool call has gone out in a chunk (a restart would lose it)."""

    def add(self, event: Delta | Done) -> None: ...

    def final(self, finish: str) -> dict: ...

    def chunks(self, event: Delta | Done, first: bool) -> list[dict]: ...


class Shape(Protocol):
    object_name: ClassVar[str]
    chunk_name: ClassVar[str]

    def choice(self, index: int) -> ChoiceWriter: ...


class _Writer:
    """What both writers share: the text and log probabilities of one choice."""

    def __init__(self, index: int, logprobs: bool) -> None:
        self.index = index
        self.started = False
        self.text: list[str] = []
        self.logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self.unsent: list[TokenLogprob] = []

    def add(self, event: Delta | Done) -> None:
        self.text.append(event.text)
        if self.logprobs is not None:
            self.logprobs.extend(event.logprobs or [])

    def _hold(self, event: Delta | Done) -> None:
        self.unsent.extend(event.logprobs or [])

    def _take(self) -> list[TokenLogprob] | None:
        """The log probabilities not sent yet; None if they were not asked for."""
        if self.logprobs is None:
            return None
        items, self.unsent = self.unsent, []
        return items


class ChatChoice(_Writer):
    def __init__(self, index: int, logprobs: bool, tools: ToolPlan) -> None:
        super().__init__(index, logprobs)
        self.tools = tools
        self.reader = tool_reader(tools)

    def final(self, finish: str) -> dict:
        text = "".join(self.text)
        content, calls = (text, []) if self.reader is None else read_all(self.reader, text)
        message: dict[str, Any] = {"role": "assistant", "content": content or _none(calls),
                                   "refusal": None}
        if calls:
            message["tool_calls"] = whole_calls(calls)
        return {"index": self.index, "message": message,
                "logprobs": chat_logprobs(self.logprobs), "finish_reason": _finish(finish, calls)}

    def chunks(self, event: Delta | Done, first: bool) -> list[dict]:
        content, calls = read_piece(self.reader, event.text, isinstance(event, Done))
        self._hold(event)
        self.started = self.started or bool(content or calls)
        delta: dict[str, Any] = {}
        if first:
            delta = {"role": "assistant", "content": content or _none(calls)}
        elif content:
            delta["content"] = content
        if calls:
            delta["tool_calls"] = [c.streamed() for c in calls]
        out = [self._chunk(delta, None)] if delta else []
        if isinstance(event, Done):
            made = self.reader is not None and self.reader.calls > 0
            out.append(self._chunk({}, _finish(event.finish_reason, made)))
        return out

    def _chunk(self, delta: dict, finish: str | None) -> dict:
        return {"index": self.index, "delta": delta, "logprobs": chat_logprobs(self._take()),
                "finish_reason": finish}


class TextChoice(_Writer):
    def __init__(self, index: int, logprobs: bool) -> None:
        super().__init__(index, logprobs)
        self.offsets = Offsets()
        """Of the tokens sent in chunks (`text_offset`)."""

    def final(self, finish: str) -> dict:
        return {"index": self.index, "text": "".join(self.text),
                "logprobs": completion_logprobs(self.logprobs, Offsets()),
                "finish_reason": finish}

    def chunks(self, event: Delta | Done, first: bool) -> list[dict]:
        self._hold(event)
        self.started = self.started or bool(event.text)
        out = [self._chunk(event.text, None)] if event.text or first else []
        if isinstance(event, Done):
            out.append(self._chunk("", event.finish_reason))
        return out

    def _chunk(self, text: str, finish: str | None) -> dict:
        logprobs = completion_logprobs(self._take(), self.offsets)
        return {"index": self.index, "text": text, "logprobs": logprobs, "finish_reason": finish}


@dataclass(frozen=True)
class ChatShape:
    object_name: ClassVar[str] = "chat.completion"
    chunk_name: ClassVar[str] = "chat.completion.chunk"
    logprobs: bool = False
    tools: ToolPlan = NO_TOOLS

    def choice(self, index: int) -> ChatChoice:
        return ChatChoice(index, self.logprobs, self.tools)


@dataclass(frozen=True)
class CompletionShape:
    object_name: ClassVar[str] = "text_completion"
    chunk_name: ClassVar[str] = "text_completion"
    logprobs: bool = False

    def choice(self, index: int) -> TextChoice:
        return TextChoice(index, self.logprobs)


def _none(calls: list[CallDelta] | bool) -> str | None:
    """A message's empty content: null beside tool calls, as OpenAI sends it."""
    return None if calls else ""


def _finish(finish: str, calls: list[CallDelta] | bool) -> str:
    return "tool_calls" if calls and finish == "stop" else finish
