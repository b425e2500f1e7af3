"""The shapes of the Anthropic Messages API's answers (`/v1/messages`, built in
`anthropic.py`), as msgspec Structs for the OpenAPI document: closed Structs, by the rules
of `schemas.py`, never used to encode a response.
"""

from __future__ import annotations

from typing import Literal

from raylane.router.schemas import Closed

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]
AnthropicErrorType = Literal[
    "invalid_request_error", "not_found_error", "request_too_large", "rate_limit_error",
    "api_error", "overloaded_error", "timeout_error", "authentication_error", "permission_error",
]


class StreamEvent(Closed, tag_field="type", kw_only=True):
    """An event of a message stream (and an error): `type` names it."""


class TextContent(Closed, kw_only=True):
    type: Literal["text"]
    text: str


class MessageUsage(Closed, kw_only=True):
    input_tokens: int
    output_tokens: int


class Message(Closed, kw_only=True):
    """A whole message (`stream` false); in `message_start`, without content, stop or usage."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[TextContent]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: MessageUsage


class MessageStart(StreamEvent, tag="message_start", kw_only=True):
    message: Message


class ContentBlockStart(StreamEvent, tag="content_block_start", kw_only=True):
    index: int
    content_block: TextContent


class Ping(StreamEvent, tag="ping", kw_only=True):
    """Sent once after the first events, as Anthropic does."""


class TextDelta(Closed, kw_only=True):
    type: Literal["text_delta"]
    text: str


class ContentBlockDelta(StreamEvent, tag="content_block_delta", kw_only=True):
    index: int
    delta: TextDelta


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
