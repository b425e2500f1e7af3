"""Anthropic Messages request bodies as msgspec Structs: the exact shapes `/v1/messages` takes.

Like `protocol.py`, unknown fields are errors. Fields Anthropic defines but raylane
cannot honour (`tools`, `tool_choice`, `thinking`, `top_k`, image and other non-text
content blocks) are declared so that a request using them is refused with the field
named (`unsupported`), never silently ignored. Responses are built as plain dicts in
`anthropic.py`, in Anthropic's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from raylane.cluster.errors import InvalidRequest
from raylane.router.protocol import MaxTokens, Priority, Strict, TopP

Temperature = Annotated[float, Meta(ge=0.0, le=1.0)]
"""Anthropic's range; raylane's samplers take it as it is."""


class TextBlock(Strict, tag="text", tag_field="type", kw_only=True):
    text: str


class _Refused(msgspec.Struct, tag_field="type"):
    """A content block raylane cannot take; its fields are not read (the block is refused)."""


class ImageBlock(_Refused, tag="image"):
    pass


class DocumentBlock(_Refused, tag="document"):
    pass


class ToolUseBlock(_Refused, tag="tool_use"):
    pass


class ToolResultBlock(_Refused, tag="tool_result"):
    pass


class ThinkingBlock(_Refused, tag="thinking"):
    pass


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock


def blocks_text(content: str | Sequence[Block], param: str) -> str:
    """The text of a content string or of text blocks; raises naming any other block."""
    if isinstance(content, str):
        return content
    for i, block in enumerate(content):
        if not isinstance(block, TextBlock):
            kind = type(block).__struct_config__.tag
            raise InvalidRequest(f"Content blocks of type '{kind}' are not supported; raylane "
                                 "takes text only.", param=f"{param}[{i}].type")
    return "".join(block.text for block in content)  # type: ignore[union-attr]


class AnthropicMessage(Strict, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Metadata(Strict, kw_only=True):
    user_id: str | None = None


class MessagesRequest(Strict, kw_only=True):
    """`POST /v1/messages`."""

    model: str
    messages: Annotated[list[AnthropicMessage], Meta(min_length=1)]
    max_tokens: MaxTokens
    """Required, as Anthropic requires it."""
    system: str | list[TextBlock] | None = None
    """Becomes a `system` message first in the chat prompt (the chat template renders it)."""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: int | None = None
    """Refused unless null: raylane's samplers take OpenAI's parameters."""
    stop_sequences: list[str] | None = None
    stream: bool = False
    metadata: Metadata | None = None
    priority: Priority | None = None
    """raylane's extension, as on the OpenAI routes: lower is more urgent."""
    tools: list[Any] | None = None
    tool_choice: Any | None = None
    thinking: Any | None = None

    def unsupported(self) -> None:
        """Raise InvalidRequest naming the first field raylane cannot honour."""
        refused = {
            "tools": bool(self.tools), "tool_choice": self.tool_choice is not None,
            "thinking": self.thinking is not None, "top_k": self.top_k is not None,
        }
        for field, used in refused.items():
            if used:
                raise InvalidRequest(f"{field} is not supported by raylane.", param=field)
