"""The shapes of the Anthropic Messages API's answers (`/v1/messages`, built in
`anthropic.py`), as msgspec Structs for the OpenAPI document: closed Structs, by the rules
of `schemas.py`, never used to encode a response.
"""

from __future__ import annotations

from typing import Any, Literal

from raylane.router.schemas import Closed

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]
AnthropicErrorType = Literal[
    "invalid_request_error", "not_found_error", "request_too_large", "rate_limit_error",
    "api_error", "overloaded_error", "timeout_error", "authentication_error", "permission_error",
]


class StreamEvent(Closed, tag_field="type", kw_only=True):
    """An event of a message stream (and an error): `type` names it."""


class TextContent(Closed, tag="text", tag_field="type", kw_only=True):
    text: str


class ToolUseContent(Closed, tag="tool_use", tag_field="type", kw_only=True):
    """A call of one of the request's tools; in `content_block_start`, with an empty
    input that `input_json_delta` pieces then fill."""

    id: str
    name: str
    input: dict[str, Any] | str
    """The call's arguments; the model's text when it is no JSON object (an answer cut by
    `max_tokens`)."""


Content = TextContent | ToolUseContent


class MessageUsage(Closed, kw_only=True):
    input_tokens: int
    output_tokens: int


class TokenCount(Closed, kw_only=True):
    """The answer to `/v1/messages/count_tokens`."""

    input_tokens: int


class Message(Closed, kw_only=True):
    """A whole message (`stream` false); in `message_start`, without content, stop or usage."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[Content]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: MessageUsage


class MessageStart(StreamEvent, tag="message_start", kw_only=True):
    message: Message


class ContentBlockStart(StreamEvent, tag="content_block_start", kw_only=True):
    index: int
    content_block: Content


class Ping(StreamEvent, tag="ping", kw_only=True):
    """Sent once after the first events, as Anthropic does."""


class TextDelta(Closed, tag="text_delta", tag_field="type", kw_only=True):
    text: str


class InputJsonDelta(Closed, tag="input_json_delta", tag_field="type", kw_only=True):
    """A piece of a call's input, as JSON text: the pieces of a block make its input."""

    partial_json: str


class ContentBlockDelta(StreamEvent, tag="content_block_delta", kw_only=True):
    index: int
    delta: TextDelta | InputJsonDelta


class ContentBlockStop(StreamEvent, tag="content_block_stop", kw_only=True):
    index: int


class StopDelta(Closed, kw_only=True):
    stop_reason: StopReason
    stop_sequence: str | None


class MessageDelta(StreamEvent, tag="message_delta", kw_only=True):
    """The message's end: why it stopped, and its whole usage."""

    delta: StopDelta
    usage: MessageUsage


class MessageStop(StreamEvent, tag="message_stop", kw_only=True):
    """The stream's last event."""


class AnthropicErrorDetail(Closed, kw_only=True):
    type: AnthropicErrorType
    message: str


class AnthropicError(StreamEvent, tag="error", kw_only=True):
    """Every error of `/v1/messages`, as Anthropic shapes it; also a failed stream's last event."""

    error: AnthropicErrorDetail


MessageEvent = (MessageStart | ContentBlockStart | Ping | ContentBlockDelta | ContentBlockStop
                | MessageDelta | MessageStop | AnthropicError)
"""The data of one event of a message stream (its `event:` line repeats `type`)."""
MESSAGE_EVENTS = ("message_start", "content_block_start", "ping", "content_block_delta",
                  "content_block_stop", "message_delta", "message_stop", "error")
