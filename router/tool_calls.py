"""Reading tool calls out of a model's text, as it streams: `tool_reader(plan)`.

A reader takes the answer's text piece by piece (`feed`) and at its end (`close`),
and returns each time the text to send as content and the tool-call pieces to send
(`CallDelta`, OpenAI's streaming shape: a call's first piece carries its id and
name). A whole answer is the same pieces put together (`read_all`, `whole_calls`), so
a stream and a whole response always agree.

- named function: all of the text is the arguments of the one call, streamed as
  they come;
- `required`: the text is a JSON array of `{"name", "arguments"}` objects (decoding
  was constrained to it); each call is sent once its object is complete;
- `auto`: calls in the Hermes form, `<tool_call>{"name": ..., "arguments": {...}}
  </tool_call>` (what Hermes, Qwen and other tool-aware templates ask for; vLLM's
  `hermes` parser reads the same). Text outside the tags is content; text that may
  be the start of a tag is held back until it is clear; a block that is not a call of
  one of the tools goes out as content, and so does an answer with no calls at all.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from raylane.router.tools import ToolPlan

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class CallDelta:
    """A piece of one tool call; the first piece of each call names it."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None

    def streamed(self) -> dict[str, Any]:
        """The piece in a chunk's `delta.tool_calls`."""
        if self.id is None:
            return {"index": self.index, "function": {"arguments": self.arguments}}
        return {"index": self.index, "id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def new_call(index: int, name: str, arguments: str) -> CallDelta:
    return CallDelta(index, arguments, f"call_{uuid.uuid4().hex[:24]}", name)


def whole_calls(pieces: list[CallDelta]) -> list[dict[str, Any]]:
    """The calls of a whole message (`message.tool_calls`), from their pieces."""
    calls: dict[int, dict[str, Any]] = {}
    for piece in pieces:
        call = calls.setdefault(piece.index, {"id": piece.id, "type": "function",
                                              "function": {"name": piece.name, "arguments": ""}})
        call["function"]["arguments"] += piece.arguments
    return list(calls.values())


class Reader(Protocol):
    calls: int
    """Calls begun so far."""

    def feed(self, text: str) -> tuple[str, list[CallDelta]]: ...

    def close(self) -> tuple[str, list[CallDelta]]: ...


def tool_reader(plan: ToolPlan) -> Reader | None:
    """The reader of an answer under `plan`; None when the answer is plain text."""
    if plan.mode == "named":
        return NamedCall(plan.function or "")
    if plan.mode == "required":
        return CallArray(plan.names)
    if plan.mode == "auto":
        return HermesCalls(plan.names)
    return None


def read_all(reader: Reader, text: str) -> tuple[str, list[CallDelta]]:
    content, calls = reader.feed(text)
    rest, more = reader.close()
    return content + rest, calls + more


def parsed_arguments(text: str) -> Any:
    """A call's arguments as an object (no text: none), or the text the model wrote when
    it is not JSON (an answer cut short), for the APIs that send them as an object."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def read_piece(reader: Reader | None, text: str, end: bool) -> tuple[str, list[CallDelta]]:
    """The content and the call pieces of the answer's next piece of text (`end`: its
    last); all of it is content without a reader."""
    if reader is None:
        return text, []
    return read_all(reader, text) if end else reader.feed(text)


class NamedCall:
    """The whole text is the arguments of one call of `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def feed(self, text: str) -> tuple[str, list[CallDelta]]:
        return "", [self._piece(text)] if text else []

    def close(self) -> tuple[str, list[CallDelta]]:
        return "", [] if self.calls else [self._piece("")]

    def _piece(self, text: str) -> CallDelta:
        if self.calls:
            return CallDelta(0, text)
        self.calls = 1
        return new_call(0, self.name, text)


def _call(value: Any, names: tuple[str, ...], index: int) -> CallDelta | None:
    """A call from `{"name": ..., "arguments": ...}` (or Llama's `parameters`), if it names
    one of the tools; its arguments as JSON text."""
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return new_call(index, value["name"], text)


class CallArray:
    """A JSON array of calls, each sent once its object is complete. Text that made no
    call at all (an answer cut short) goes out as content at the end."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.calls = 0
        self.text: list[str] = []
        self.element: list[str] = []
        self.depth = 0
        self.string = self.escape = False

    def feed(self, text: str) -> tuple[str, list[CallDelta]]:
        found = []
        self.text.append(text)
        for ch in text:
            if self.depth >= 2 or (self.depth == 1 and ch == "{"):
                self.element.append(ch)
            if self.string:
                self.escape, self.string = (False, True) if self.escape else (
                    ch == "\\", ch != '"')
            elif ch == '"':
                self.string = True
            elif ch in "[{":
                self.depth += 1
            elif ch in "]}":
                self.depth -= 1
                if self.depth == 1 and ch == "}":
                    found += self._complete()
        return "", found

    def _complete(self) -> list[CallDelta]:
        element, self.element = "".join(self.element), []
        try:
            call = _call(json.loads(element), self.names, self.calls)
        except ValueError:
            call = None
        self.calls += call is not None
        return [call] if call else []

    def close(self) -> tuple[str, list[CallDelta]]:
        return ("" if self.calls else "".join(self.text)), []


class HermesCalls:
    """Calls in `<tool_call>` tags among plain text (see the module docstring).
    Whitespace around calls is dropped; an answer without calls keeps all of its text."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.calls = 0
        self.buf = ""
        self.inside = False
        self.space = ""
        """Trailing whitespace held back: it goes out before more text, or is dropped
        when a call follows."""

    def feed(self, text: str) -> tuple[str, list[CallDelta]]:
        self.buf += text
        content: list[str] = []
        found: list[CallDelta] = []
        while True:
            if self.inside:
                end = self.buf.find(CLOSE)
                if end < 0:
                    break
                body, self.buf = self.buf[:end], self.buf[end + len(CLOSE):]
                self.inside = False
                content.append(self._block(body, found))
                continue
            start = self.buf.find(OPEN)
            if start < 0:
                cut = len(self.buf) - _tag_start(self.buf)
                content.append(self._text(self.buf[:cut]))
                self.buf = self.buf[cut:]
                break
            content.append(self._text(self.buf[:start]))
            self.buf, self.inside = self.buf[start + len(OPEN):], True
        return "".join(content), found

    def close(self) -> tuple[str, list[CallDelta]]:
        found: list[CallDelta] = []
        # An open block at the end: models often end their turn without the closing tag.
        content = self._block(self.buf, found) if self.inside else self._text(self.buf)
        if not self.calls:
            content += self.space
        self.buf, self.space, self.inside = "", "", False
        return content, found

    def _block(self, body: str, found: list[CallDelta]) -> str:
        """A call from a tagged block, added to `found`; or the block as content."""
        try:
            call = _call(json.loads(body), self.names, self.calls)
        except ValueError:
            call = None
        if call is None:
            return self._text(f"{OPEN}{body}{CLOSE if not self.inside else ''}")
        self.calls += 1
        self.space = ""
        found.append(call)
        return ""

    def _text(self, text: str) -> str:
        text = self.space + text
        kept = text.rstrip()
        self.space = text[len(kept):]
        return kept


def _tag_start(text: str) -> int:
    """Length of the longest end of `text` that begins the opening tag."""
    return next((n for n in range(min(len(OPEN) - 1, len(text)), 0, -1)
                 if text.endswith(OPEN[:n])), 0)
