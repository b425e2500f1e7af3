"""Anthropic Messages request bodies as msgspec Structs: the exact shapes `/v1/messages` takes.

Like `protocol.py`, unknown fields are errors. Fields Anthropic defines but raylane
cannot honour (`thinking`, image and other non-text content blocks, server
tools) are declared so that a request using them is refused with the field named
(`unsupported`), never silently ignored. Custom tools (`tools`, `tool_choice`,
`tool_use` and `tool_result` blocks) become OpenAI's (`messages_tools`, `messages_chat`
in `requests.py`). Responses are built as plain dicts in `anthropic.py`, in Anthropic's
shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from raylane.cluster.errors import InvalidRequest
from raylane.router.protocol import INT64_MAX, MaxTokens, Priority, Strict, ToolName, TopP

Temperature = Annotated[float, Meta(ge=0.0, le=1.0)]
"""Anthropic's range; raylane's samplers take it as it is."""


class TextBlock(Strict, tag="text", tag_field="type", kw_only=True):
    text: str
    cache_control: dict[str, Any] | None = None
    """A prompt-caching hint; accepted, without effect."""


class _Refused(msgspec.Struct, tag_field="type"):
    """A content block raylane cannot take; its fields are not read (the block is refused)."""


class ImageBlock(_Refused, tag="image"):
    pass


class DocumentBlock(_Refused, tag="document"):
    pass


class ToolUseBlock(Strict, tag="tool_use", tag_field="type", kw_only=True):
    """A call the assistant made, sent back as part of the conversation."""

    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class ToolResultBlock(Strict, tag="tool_result", tag_field="type", kw_only=True):
    """What a call of the assistant's came to: the conversation's `tool` message."""

    tool_use_id: str
    content: str | list[Block] = ""
    """Text, or text blocks."""
    is_error: bool = False
    """The text goes to the model after `Error: `."""
    cache_control: dict[str, Any] | None = None


class ThinkingBlock(_Refused, tag="thinking"):
    pass


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock


def blocks_text(content: str | Sequence[Block], param: str) -> str:
    """The text of a content string or of text blocks; raises naming any other block."""
    if isinstance(content, str):
        return content
    for i, block in enumerate(content):
        refuse_block(block, f"{param}[{i}]")
    return "".join(block.text for block in content)  # type: ignore[union-attr]


def refuse_block(block: Block, param: str) -> None:
    """Raise InvalidRequest naming `block` (at `param`) unless it is text."""
    if not isinstance(block, TextBlock):
        kind = type(block).__struct_config__.tag
        raise InvalidRequest(f"Content blocks of type '{kind}' are not supported here; "
                             "raylane takes text (and tool_use in assistant turns, "
                             "tool_result in user turns).", param=f"{param}.type")


class AnthropicTool(Strict, kw_only=True):
    """A custom tool: the only kind raylane runs (server tools, such as web search, need
    Anthropic's servers)."""

    name: ToolName
    input_schema: dict[str, Any]
    """The JSON Schema of the call's `input` (an object)."""
    description: str | None = None
    type: Literal["custom"] | None = None
    strict: bool | None = None
    """Accepted either way: a forced call is always constrained to the schema."""
    cache_control: dict[str, Any] | None = None


class _Choice(Strict, tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool = False
    """With `any`, at most one call (`tool` makes one anyway; `auto` reads what comes)."""


class ChoiceAuto(_Choice, tag="auto"):
    pass


class ChoiceAny(_Choice, tag="any"):
    pass


class ChoiceTool(_Choice, tag="tool", kw_only=True):
    name: str


class ChoiceNone(Strict, tag="none", tag_field="type"):
    pass


ToolChoice = ChoiceAuto | ChoiceAny | ChoiceTool | ChoiceNone


class AnthropicMessage(Strict, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Metadata(Strict, kw_only=True):
    user_id: str | None = None


class Conversation(Strict, kw_only=True):
    """What `/v1/messages` and `/v1/messages/count_tokens` share: the model, the
    conversation and the tools the model is shown."""

    model: str
    messages: Annotated[list[AnthropicMessage], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    """Becomes a `system` message first in the chat prompt (the chat template renders it)."""
    tools: list[dict[str, Any]] | None = None
    """Custom tools, each an `AnthropicTool`: read one by one (`anthropic_requests.py`), so
    that a server tool is refused as one."""
    tool_choice: ToolChoice | None = None
    """Without it, `auto` when there are tools."""
    thinking: Any | None = None
    priority: Priority | None = None
    """raylane's extension, as on the OpenAI routes: lower is more urgent."""

    def unsupported(self) -> None:
        """Raise InvalidRequest naming the first field raylane cannot honour."""
        refused = {"thinking": self.thinking is not None}
        for field, used in refused.items():
            if used:
                raise InvalidRequest(f"{field} is not supported by raylane.", param=field)


class MessagesRequest(Conversation, kw_only=True):
    """`POST /v1/messages`."""

    max_tokens: MaxTokens
    """Required, as Anthropic requires it."""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, Meta(ge=0, le=INT64_MAX)] | None = None
    """Sample among the k likeliest tokens."""
    stop_sequences: list[str] | None = None
    stream: bool = False
    metadata: Metadata | None = None


class CountTokensRequest(Conversation, kw_only=True):
    """`POST /v1/messages/count_tokens`: the input tokens a Messages request of this
    conversation would have."""
