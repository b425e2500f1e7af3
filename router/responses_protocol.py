"""OpenAI's Responses API request (`POST /v1/responses`) as msgspec Structs.

raylane answers a response from the request alone: nothing is stored, so
`previous_response_id` (and an `item_reference` input) is refused, and `store` is taken
in either value and stores nothing. Input items are messages (with or without
`"type": "message"`; text content as a string or `input_text` / `output_text` parts),
`function_call` and `function_call_output`; tools are `function` tools. Everything else
the API defines (images, files, hosted tools, reasoning) is refused with a 400 naming
the field, never ignored.

`input` items are decoded one at a time (`input_items`), since a message item may leave
its `type` out: each error names the item (`input[2].call_id`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import Priority
from raylane.router.errors import convert_at
from raylane.router.protocol import (
    INT64_MAX,
    MAX_TOOLS,
    JsonObjectFormat,
    Strict,
    Temperature,
    TextFormat,
    ToolName,
    TopP,
)

MaxOutputTokens = Annotated[int, Meta(ge=1, le=INT64_MAX)]


class InputText(Strict, kw_only=True, tag="input_text", tag_field="type"):
    text: str


class OutputText(Strict, kw_only=True, tag="output_text", tag_field="type"):
    """Text of an earlier answer, sent back as part of the conversation."""

    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class MessageItem(Strict, kw_only=True, tag="message", tag_field="type"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText | OutputText]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(Strict, kw_only=True, tag="function_call", tag_field="type"):
    """A call an earlier answer made."""

    call_id: str
    name: str
    arguments: str
    """JSON text, as the model wrote it."""
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(Strict, kw_only=True, tag="function_call_output",
                             tag_field="type"):
    """The result of a call, for the model to read."""

    call_id: str
    output: str
    id: str | None = None
    status: str | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem
ITEM_TYPES = ("message", "function_call", "function_call_output")


class FunctionTool(Strict, kw_only=True):
    type: Literal["function"]
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The JSON Schema of the arguments (an object); absent, the function takes none."""
    strict: bool | None = None
    """Accepted either way: a forced call is always constrained to the schema."""


class FunctionChoice(Strict, kw_only=True):
    """Call this function."""

    type: Literal["function"]
    name: str


class JsonSchemaText(Strict, kw_only=True, tag="json_schema", tag_field="type"):
    """The answer is JSON matching `schema`."""

    name: Annotated[str, Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None
    """Accepted either way: the engines always constrain decoding to the schema."""


class TextConfig(Strict, kw_only=True):
    format: TextFormat | JsonObjectFormat | JsonSchemaText | None = None
    verbosity: Literal["medium"] | None = None
    """Accepted at its default only."""


class ResponsesRequest(Strict, kw_only=True):
    model: str
    input: str | Annotated[list[dict[str, Any]], Meta(min_length=1)]
    """A user message, or the conversation as input items."""
    instructions: str | None = None
    """A system message before the input."""
    max_output_tokens: MaxOutputTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    """`function` tools (`type`, `name`, `description`, `parameters`, `strict`)."""
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    store: bool | None = None
    """Taken either way: raylane stores no responses."""
    previous_response_id: str | None = None
    """Refused: raylane stores no responses to continue from."""
    metadata: dict[str, str] | None = None
    user: str | None = None
    priority: Priority | None = None
    """vLLM's extension: lower is more urgent."""
    reasoning: dict[str, Any] | None = None
    """Refused unless empty: the served models do not reason."""
    truncation: Literal["disabled"] | None = None
    include: list[str] | None = None
    """Refused unless empty."""

    def unsupported(self) -> None:
        """Refuse what raylane cannot do, naming the field."""
        if self.previous_response_id is not None:
            raise InvalidRequest("raylane stores no responses: send the whole conversation as "
                                 "input instead of previous_response_id.",
                                 param="previous_response_id")
        if self.reasoning:
            raise InvalidRequest("reasoning is not supported.", param="reasoning")
        if self.include:
            raise InvalidRequest(f"include {self.include[0]!r} is not supported.",
                                 param="include")
        if self.tools is not None and len(self.tools) > MAX_TOOLS:
            raise InvalidRequest(f"At most {MAX_TOOLS} tools.", param="tools")


def input_items(req: ResponsesRequest) -> list[InputItem]:
    """The request's input as items: a string is one user message."""
    if isinstance(req.input, str):
        return [MessageItem(role="user", content=req.input)]
    return [_item(raw, f"input[{i}]") for i, raw in enumerate(req.input)]


def _item(raw: dict[str, Any], where: str) -> InputItem:
    kind = raw.get("type", "message")
    if kind not in ITEM_TYPES:
        reason = ("raylane stores no responses to refer to" if kind == "item_reference"
                  else "raylane takes messages, function_call and function_call_output items")
        raise InvalidRequest(f"Input items of type {kind!r} are not supported: {reason}.",
                             param=f"{where}.type")
    return convert_at({**raw, "type": kind}, InputItem, where)  # type: ignore[arg-type]


def function_tools(req: ResponsesRequest) -> list[FunctionTool]:
    """The request's tools, each a function tool, or InvalidRequest naming the one that is
    not."""
    tools = []
    for i, raw in enumerate(req.tools or []):
        where = f"tools[{i}]"
        if raw.get("type") != "function":
            raise InvalidRequest(f"Tools of type {raw.get('type')!r} are not supported: "
                                 "raylane runs function tools.", param=f"{where}.type")
        tools.append(convert_at(raw, FunctionTool, where))
    return tools
