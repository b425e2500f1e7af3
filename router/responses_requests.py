"""From a Responses API request to its job: the conversation, its tools and its format.

The input becomes the chat messages an OpenAI chat request would carry:

- `instructions` is a system message before the input;
- a message item is a message of its role (`developer` as the chat API takes it);
- `function_call` items are the `tool_calls` of an assistant message: of the assistant
  message just before them, or of one of their own;
- a `function_call_output` item is a `tool` message answering the call of its
  `call_id` (and naming its function, for templates that show it).

`tools` and `tool_choice` become the chat API's (`tools.py`), and so does `text.format`
(`response_format`): a forced call with a JSON format is refused, as on chat.
"""

from __future__ import annotations

import msgspec

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import ChatPrompt, Job, Message, ToolCall
from raylane.router.admission import Ticket
from raylane.router.protocol import FunctionDefinition, Sampling, Tool
from raylane.router.requests import checked_schema, prompt_job, sampling
from raylane.router.responses_protocol import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputItem,
    JsonObjectFormat,
    JsonSchemaText,
    ResponsesRequest,
    function_tools,
    input_items,
)
from raylane.router.tools import Fields, ToolPlan, plan

FIELDS = Fields(name="name", parameters="parameters", choice_name="tool_choice.name")


def response_tools(req: ResponsesRequest) -> ToolPlan:
    """The plan of the request's tools, or InvalidRequest naming what is wrong."""
    tools = [Tool(type="function", function=FunctionDefinition(
        name=t.name, description=t.description, parameters=t.parameters))
        for t in function_tools(req)]
    choice = req.tool_choice
    parallel = req.parallel_tool_calls is not False
    if isinstance(choice, FunctionChoice):
        return plan(tools, "named", choice.name, parallel, FIELDS)
    return plan(tools, choice, None, parallel, FIELDS)


def response_job(req: ResponsesRequest, ticket: Ticket, reply_to: str, tools: ToolPlan) -> Job:
    """The job of a Responses request offering the model `tools` (`response_tools`)."""
    req.unsupported()
    options = Sampling(model=req.model, temperature=req.temperature, top_p=req.top_p)
    params = sampling(options, req.max_output_tokens, ticket.model.max_tokens)
    fmt = req.text.format if req.text is not None else None
    if tools.schema is not None and isinstance(fmt, JsonObjectFormat | JsonSchemaText):
        raise InvalidRequest("A forced tool call is JSON already: it cannot be combined with a "
                             "JSON text.format.", param="text.format")
    if isinstance(fmt, JsonObjectFormat):
        params = msgspec.structs.replace(params, json_object=True)
    elif isinstance(fmt, JsonSchemaText):
        params = msgspec.structs.replace(
            params, json_schema=checked_schema(fmt.schema, "text.format.schema"))
    params = msgspec.structs.replace(params, json_schema=tools.schema or params.json_schema)
    prompt = ChatPrompt(messages=chat_messages(req), tools=tools.tools,
                        tools_forced=bool(tools.schema))
    return prompt_job(ticket, "chat", prompt, params, reply_to)


def chat_messages(req: ResponsesRequest) -> list[Message]:
    """The request's instructions and input items as chat messages."""
    messages = [Message(role="system", content=req.instructions)] if req.instructions else []
    names: dict[str, str] = {}  # function names by call id, for the outputs that answer them
    for i, item in enumerate(input_items(req)):
        messages = _add(messages, item, names, f"input[{i}]")
    return messages


def _add(messages: list[Message], item: InputItem, names: dict[str, str],
         where: str) -> list[Message]:
    if isinstance(item, FunctionCallItem):
        names[item.call_id] = item.name
        call = ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant":
            return [*messages[:-1], msgspec.structs.replace(
                last, tool_calls=[*last.tool_calls, call])]
        return [*messages, Message(role="assistant", content="", tool_calls=[call])]
    if isinstance(item, FunctionCallOutputItem):
        if item.call_id not in names:
            raise InvalidRequest(f"No function_call item before this output has the call_id "
                                 f"{item.call_id!r}.", param=f"{where}.call_id")
        return [*messages, Message(role="tool", content=item.output, tool_call_id=item.call_id,
                                   name=names[item.call_id])]
    return [*messages, Message(role=item.role, content=item.text())]
