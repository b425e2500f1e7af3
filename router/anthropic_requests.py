"""From an Anthropic Messages request to its job: the conversation and its tools.

The conversation becomes the chat messages an OpenAI request would carry:

- a `system` prompt is the first message;
- an assistant turn's text blocks are its content and its `tool_use` blocks its
  `tool_calls` (the input as JSON text);
- a user turn's `tool_result` blocks are `tool` messages, one per result, answering the
  call of the same id (and naming its function, for templates that show it); its text
  blocks, if any, are a user message after them.

`tools` and `tool_choice` become OpenAI's (`tools.py`): `auto` (the default with tools),
`any` (OpenAI's `required`; `disable_parallel_tool_use` allows one call), `tool` (a named
function) and `none`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Job,
    Message,
    SamplingParams,
    TokenizeInputs,
    ToolCall,
)
from raylane.router.admission import Ticket
from raylane.router.anthropic_protocol import (
    AnthropicMessage,
    AnthropicTool,
    ChoiceAny,
    ChoiceAuto,
    ChoiceNone,
    ChoiceTool,
    Conversation,
    CountTokensRequest,
    MessagesRequest,
    ToolResultBlock,
    ToolUseBlock,
    blocks_text,
    refuse_block,
)
from raylane.router.errors import convert_at
from raylane.router.protocol import FunctionDefinition, Sampling, Tool
from raylane.router.requests import prompt_job, sampling
from raylane.router.tools import NO_TOOLS, Fields, ToolPlan, plan

FIELDS = Fields(name="name", parameters="input_schema", choice_name="tool_choice.name")


def message_job(req: MessagesRequest, ticket: Ticket, reply_to: str,
                tools: ToolPlan = NO_TOOLS) -> Job:
    """The job of a Messages request offering the model `tools` (`messages_tools`)."""
    req.unsupported()
    options = Sampling(model=req.model, temperature=req.temperature, top_p=req.top_p,
                       top_k=req.top_k, stop=list(req.stop_sequences or []))
    params = sampling(options, req.max_tokens, ticket.model.max_tokens)
    params = msgspec.structs.replace(params, json_schema=tools.schema or params.json_schema)
    return prompt_job(ticket, "chat", conversation_prompt(req, tools), params, reply_to)


def count_job(req: CountTokensRequest, ticket: Ticket, reply_to: str) -> Job:
    """The tokenize job counting the input tokens of a Messages request of `req`'s
    conversation: its prompt exactly as `message_job` would render it."""
    req.unsupported()
    work = TokenizeInputs(conversation_prompt(req, messages_tools(req)))
    return prompt_job(ticket, "tokenize", work, SamplingParams(), reply_to)


def conversation_prompt(req: Conversation, tools: ToolPlan) -> ChatPrompt:
    """The chat prompt of a conversation whose model is offered `tools`."""
    return ChatPrompt(messages=chat_messages(req), tools=tools.tools,
                      tools_forced=bool(tools.schema))


def messages_tools(req: Conversation) -> ToolPlan:
    """The plan of the request's tools, or InvalidRequest naming what is wrong."""
    tools = [_tool(t, i) for i, t in enumerate(req.tools or [])]
    choice = req.tool_choice
    if isinstance(choice, ChoiceTool):
        return plan(tools, "named", choice.name, fields=FIELDS)
    mode = {ChoiceAuto: "auto", ChoiceAny: "required", ChoiceNone: "none"}.get(
        type(choice)) if choice is not None else None
    parallel = not (isinstance(choice, ChoiceAny) and choice.disable_parallel_tool_use)
    return plan(tools, mode, None, parallel, FIELDS)


def _tool(raw: dict[str, Any], index: int) -> Tool:
    """A custom tool as OpenAI's function tool; a server tool is refused as one."""
    where = f"tools[{index}]"
    kind = raw.get("type")
    if kind not in (None, "custom"):
        raise InvalidRequest(f"Server tools ({kind!r}) are not supported: raylane runs "
                             "custom tools, given by name, description and input_schema.",
                             param=f"{where}.type")
    t = convert_at(raw, AnthropicTool, where)
    return Tool(type="function", function=FunctionDefinition(
        name=t.name, description=t.description, parameters=t.input_schema))


def chat_messages(req: Conversation) -> list[Message]:
    """The request's system prompt and turns as chat messages."""
    messages = []
    if req.system:
        messages.append(Message(role="system", content=blocks_text(req.system, "system")))
    names: dict[str, str] = {}  # function names by call id, for the results that answer them
    for i, m in enumerate(req.messages):
        messages += _turn(m, f"messages[{i}]", names)
    return messages


def _turn(m: AnthropicMessage, where: str, names: dict[str, str]) -> list[Message]:
    if isinstance(m.content, str):
        return [Message(role=m.role, content=m.content)]
    text: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for j, block in enumerate(m.content):
        at = f"{where}.content[{j}]"
        if isinstance(block, ToolUseBlock) and m.role == "assistant":
            names[block.id] = block.name
            calls.append(ToolCall(id=block.id, name=block.name,
                                  arguments=json.dumps(block.input)))
        elif isinstance(block, ToolResultBlock) and m.role == "user":
            results.append(Message(role="tool", content=_result(block, at),
                                   tool_call_id=block.tool_use_id,
                                   name=names.get(block.tool_use_id)))
        else:
            refuse_block(block, at)
            text.append(block.text)  # type: ignore[union-attr]
    if m.role == "assistant":
        return [Message(role="assistant", content="".join(text), tool_calls=calls)]
    return results + ([Message(role="user", content="".join(text))] if text or not results
                      else [])


def _result(block: ToolResultBlock, where: str) -> str:
    text = blocks_text(block.content, f"{where}.content")
    return f"Error: {text}" if block.is_error else text
