"""What chat templates get: tools for those that take them, a system message for those
that do not, and earlier tool calls either way."""

from __future__ import annotations

import json

import pytest

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import ChatPrompt, Message, ToolCall
from raylane.workers.templates import takes_tools, template_inputs

PLAIN = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
TOOLS = "{% if tools %}{{ tools | tojson }}{% endif %}" + PLAIN
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
CONVERSATION = [
    Message(role="user", content="Weather in Paris?"),
    Message(role="assistant", content="", tool_calls=[
        ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')]),
    Message(role="tool", content="18C", tool_call_id="call_1"),
]


def prompt(forced: bool, system: str | None = None) -> ChatPrompt:
    head = [Message(role="system", content=system)] if system else []
    return ChatPrompt([*head, *CONVERSATION], tools=json.dumps([TOOL]), tools_forced=forced)


def test_templates_that_read_tools_are_told_apart() -> None:
    assert takes_tools(TOOLS) and not takes_tools(PLAIN) and not takes_tools(None)
    assert not takes_tools("{{ toolset }}")


def test_a_template_that_takes_tools_gets_them_and_the_calls_as_mappings() -> None:
    messages, tools = template_inputs(prompt(forced=False), TOOLS)
    assert tools == [TOOL]
    assert messages[1]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert messages[2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}


def test_auto_is_refused_when_the_template_cannot_show_tools() -> None:
    with pytest.raises(InvalidRequest) as error:
        template_inputs(prompt(forced=False), PLAIN)
    assert error.value.param == "tool_choice" and '"required"' in error.value.message


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_a_forced_call_puts_the_tools_in_a_system_message(system: str | None) -> None:
    messages, tools = template_inputs(prompt(forced=True, system=system), PLAIN)
    assert tools is None
    assert messages[0]["role"] == "system" and json.dumps(TOOL) in messages[0]["content"]
    assert messages[0]["content"].startswith(system or "You may call")
    assert len(messages) == 1 + len(CONVERSATION)
    assert messages[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')


def test_earlier_calls_are_kept_without_tools_on_offer() -> None:
    messages, tools = template_inputs(ChatPrompt(CONVERSATION), PLAIN)
    assert tools is None and len(messages) == len(CONVERSATION)
    assert "get_weather" in messages[1]["content"]
