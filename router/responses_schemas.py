"""The shapes of the Responses API's answers (`/v1/responses`, built in `responses.py`),
as msgspec Structs for the OpenAPI document: closed Structs, by the rules of `schemas.py`,
never used to encode a response.
"""

from __future__ import annotations

from typing import Any, Literal

from raylane.router.schemas import Closed

Status = Literal["in_progress", "completed", "incomplete"]


class OutputTextPart(Closed, tag="output_text", tag_field="type", kw_only=True):
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class OutputMessage(Closed, tag="message", tag_field="type", kw_only=True):
    """The answer's text (its content is empty while it is in progress)."""

    id: str
    status: Status
    role: Literal["assistant"]
    content: list[OutputTextPart]


class FunctionCallOutput(Closed, tag="function_call", tag_field="type", kw_only=True):
    """A call of one of the request's tools."""

    id: str
    status: Status
    call_id: str
    """The id the caller's `function_call_output` item answers."""
    name: str
    arguments: str
    """JSON text, as the model wrote it."""


OutputItem = OutputMessage | FunctionCallOutput


class InputTokensDetails(Closed, kw_only=True):
    cached_tokens: int


class OutputTokensDetails(Closed, kw_only=True):
    reasoning_tokens: int


class ResponseUsage(Closed, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(Closed, kw_only=True):
    reason: Literal["max_output_tokens"]


class Reasoning(Closed, kw_only=True):
    effort: None
    summary: None


class TextSettings(Closed, kw_only=True):
    format: dict[str, Any]
    """The request's `text.format`; `{"type": "text"}` by default."""


class FunctionToolSetting(Closed, kw_only=True):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Response(Closed, kw_only=True):
    """A whole response (`stream` false); in the stream's first events, in progress with no
    output or usage."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Status
    error: None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: None
    reasoning: Reasoning
    store: bool
    temperature: float
    text: TextSettings
    tool_choice: str | dict[str, Any]
    tools: list[FunctionToolSetting]
    top_p: float
    truncation: Literal["disabled"]
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]


class ResponseEvent(Closed, tag_field="type", kw_only=True):
    """An event of a response stream: `type` names it, `sequence_number` counts from 0."""

    sequence_number: int


class ResponseCreated(ResponseEvent, tag="response.created", kw_only=True):
    response: Response


class ResponseInProgress(ResponseEvent, tag="response.in_progress", kw_only=True):
    response: Response


class OutputItemAdded(ResponseEvent, tag="response.output_item.added", kw_only=True):
    output_index: int
    item: OutputItem


class ContentPartAdded(ResponseEvent, tag="response.content_part.added", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextPart


class OutputTextDelta(ResponseEvent, tag="response.output_text.delta", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any]


class OutputTextDone(ResponseEvent, tag="response.output_text.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any]


class ContentPartDone(ResponseEvent, tag="response.content_part.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextPart


class ArgumentsDelta(ResponseEvent, tag="response.function_call_arguments.delta",
                     kw_only=True):
    item_id: str
    output_index: int
    delta: str


class ArgumentsDone(ResponseEvent, tag="response.function_call_arguments.done", kw_only=True):
    item_id: str
    output_index: int
    name: str
    arguments: str


class OutputItemDone(ResponseEvent, tag="response.output_item.done", kw_only=True):
    output_index: int
    item: OutputItem


class ResponseCompleted(ResponseEvent, tag="response.completed", kw_only=True):
    response: Response


class ResponseIncomplete(ResponseEvent, tag="response.incomplete", kw_only=True):
    """The stream's last event when `max_output_tokens` cut the answer."""

    response: Response


class ResponseError(ResponseEvent, tag="error", kw_only=True):
    """A failed stream's last event."""

    code: str | None
    message: str
    param: str | None


ResponseStreamEvent = (ResponseCreated | ResponseInProgress | OutputItemAdded | ContentPartAdded
                       | OutputTextDelta | OutputTextDone | ContentPartDone | ArgumentsDelta
                       | ArgumentsDone | OutputItemDone | ResponseCompleted | ResponseIncomplete
                       | ResponseError)
"""The data of one event of a response stream (its `event:` line repeats `type`)."""
RESPONSE_EVENTS = ("response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added", "response.output_text.delta",
                   "response.output_text.done", "response.content_part.done",
                   "response.function_call_arguments.delta",
                   "response.function_call_arguments.done", "response.output_item.done",
                   "response.incomplete", "response.completed", "error")
