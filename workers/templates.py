"""Chat prompts as Hugging Face chat templates take them: messages, tool calls, tools.

Both template engines (llama.cpp's Jinja formatter and the checkpoint tokenizer's
`apply_chat_template`) get the same messages and `tools` from here. A template that
reads `tools` (Hermes, Qwen, Llama 3.1 and the like) renders the tool definitions and
earlier calls itself. One that does not (SmolLM2's) cannot let the model choose to
call a tool, so `tool_choice: auto` is refused; a forced call (`required` or a named
function) still works, since decoding is constrained to the call's JSON, and the tools
then go into a system message in the Hermes form, as do earlier calls into the text of
their assistant messages.
"""

from __future__ import annotations

import json
import re
from typing import Any

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import ChatPrompt, Message, ToolCall

TOOLS_SYSTEM = ("You may call one or more functions. Their signatures, with the JSON "
                "Schema of their arguments:\n<tools>\n{tools}\n</tools>")


def takes_tools(template: str | None) -> bool:
    """Whether a chat template's source reads the `tools` variable."""
    return template is not None and re.search(r"\btools\b", template) is not None


def template_inputs(prompt: ChatPrompt, template: str | None
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The `messages` and `tools` to render `prompt` with `template` (its source)."""
    tools = json.loads(prompt.tools) if prompt.tools else None
    native = takes_tools(template)
    if tools and not native and not prompt.tools_forced:
        raise InvalidRequest(
            'This model\'s chat template does not take tools, so the model cannot choose '
            'to call one: tools it may call or not (OpenAI\'s tool_choice "auto", Ollama\'s '
            'tools) need a template that does (the pool option `chat_template`); a forced '
            'call (tool_choice "required" or a named function) still works.',
            param="tool_choice")
    messages = [_message(m, native) for m in prompt.messages]
    if tools and not native:
        return _with_system(messages, TOOLS_SYSTEM.format(
            tools="\n".join(json.dumps(t) for t in tools))), None
    return messages, tools


def _message(m: Message, native: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.tool_calls and native:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": _arguments(c)}}
                             for c in m.tool_calls]
    elif m.tool_calls:
        out["content"] = m.content + "".join(
            f"<tool_call>\n{json.dumps({'name': c.name, 'arguments': _arguments(c)})}\n"
            "</tool_call>" for c in m.tool_calls)
    return out


def _arguments(call: ToolCall) -> Any:
    """A call's arguments as templates expect them: a mapping (vLLM does the same), or the
    text itself when it is not JSON."""
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def _with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] in ("system", "developer"):
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
