"""Tool calls read out of model text, on fixed text: whole, and streamed in any pieces."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest

from raylane.cluster.errors import InvalidRequest
from raylane.router.protocol import ChatCompletionRequest
from raylane.router.tool_calls import CallDelta, read_all, tool_reader, whole_calls
from raylane.router.tools import ToolPlan, tool_plan

NAMES = ("get_weather", "get_time")
AUTO = ToolPlan("auto", NAMES, tools="[]")
REQUIRED = ToolPlan("required", NAMES, tools="[]", schema="{}")
NAMED = ToolPlan("named", NAMES, "get_weather", "[]", "{}")


def whole(plan: ToolPlan, text: str) -> tuple[str, list[dict]]:
    reader = tool_reader(plan)
    assert reader is not None
    content, calls = read_all(reader, text)
    return content, whole_calls(calls)


def streamed(plan: ToolPlan, text: str, size: int) -> tuple[str, list[dict]]:
    """The same text fed `size` characters at a time, as a stream would carry it."""
    reader = tool_reader(plan)
    assert reader is not None
    content, calls = [], []
    for i in range(0, len(text), size):
        piece, found = reader.feed(text[i:i + size])
        content.append(piece)
        calls += found
    rest, found = reader.close()
    return "".join(content) + rest, whole_calls(calls + found)


def call(name: str, arguments: dict) -> dict:
    return {"name": name, "arguments": arguments}


def summary(calls: list[dict]) -> list[tuple[str, dict]]:
    for c in calls:
        assert c["type"] == "function" and c["id"].startswith("call_")
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


HERMES = [
    # (model text, content, calls)
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "", [("get_weather", {"city": "Paris"})]),
    ('Let me look.\n<tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call>\n'
     '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n',
     "Let me look.", [("get_time", {"tz": "UTC"}), ("get_weather", {"city": "Oslo"})]),
    # Ended without its closing tag, as models often do at the end of their turn.
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}',
     "", [("get_weather", {"city": "Rome"})]),
    # Llama-style `parameters` is read as the arguments.
    ('<tool_call>{"name": "get_time", "parameters": {"tz": "CET"}}</tool_call>',
     "", [("get_time", {"tz": "CET"})]),
    # Not a call of one of the tools, or not JSON: plain content, as written.
    ('<tool_call>{"name": "launch", "arguments": {}}</tool_call>',
     '<tool_call>{"name": "launch", "arguments": {}}</tool_call>', []),
    ("<tool_call>not json</tool_call> ok", "<tool_call>not json</tool_call> ok", []),
    ("<tool_call>{broken", "<tool_call>{broken", []),
    # No call: the text, whitespace and tag-like text included, goes out unchanged.
    ("Paris is sunny.\n\n", "Paris is sunny.\n\n", []),
    ("a < b and <tool but no call <", "a < b and <tool but no call <", []),
]


@pytest.mark.parametrize(("text", "content", "calls"), HERMES)
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_auto_reads_hermes_calls_in_any_pieces(text: str, content: str, calls: list,
                                                size: int) -> None:
    got_content, got_calls = streamed(AUTO, text, size)
    assert got_content == content
    assert summary(got_calls) == calls
    assert whole(AUTO, text)[0] == content


def test_auto_holds_back_a_possible_tag_and_sends_plain_text_at_once() -> None:
    reader = tool_reader(AUTO)
    assert reader is not None
    assert reader.feed("Hello <tool") == ("Hello", [])  # the space waits: a call may follow
    assert reader.feed("box> there") == (" <toolbox> there", [])
    content, calls = reader.feed('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    assert content == "" and calls[0].name == "get_time" and calls[0].index == 0


def test_required_calls_go_out_as_each_object_completes() -> None:
    text = json.dumps([call("get_weather", {"city": "a]}\"{"}), call("get_time", {"tz": "X"})])
    reader = tool_reader(REQUIRED)
    assert reader is not None
    seen: list[CallDelta] = []
    for i, ch in enumerate(text):
        _, found = reader.feed(ch)
        if found:
            seen += found
            assert text[i] == "}" and text[i + 1] in ",]"
    assert reader.close() == ("", [])
    assert summary(whole_calls(seen)) == [("get_weather", {"city": "a]}\"{"}),
                                          ("get_time", {"tz": "X"})]
    assert [c.index for c in seen] == [0, 1]


def test_required_text_cut_short_before_a_call_is_content() -> None:
    text = '[{"name": "get_weather", "argu'
    assert whole(REQUIRED, text) == (text, [])
    assert streamed(REQUIRED, text, 2) == (text, [])


def test_a_named_call_streams_its_arguments_as_they_come() -> None:
    reader = tool_reader(NAMED)
    assert reader is not None
    first = reader.feed('{"city"')[1]
    rest = reader.feed(': "Paris"}')[1]
    assert first[0].streamed()["function"] == {"name": "get_weather", "arguments": '{"city"'}
    assert rest[0].streamed() == {"index": 0, "function": {"arguments": ': "Paris"}'}}
    assert reader.close() == ("", [])
    assert summary(whole_calls(first + rest)) == [("get_weather", {"city": "Paris"})]
    # An answer cut before any text is still the call, with empty arguments.
    assert whole(NAMED, "")[1][0]["function"] == {"name": "get_weather", "arguments": ""}


def test_plain_answers_need_no_reader() -> None:
    assert tool_reader(ToolPlan()) is None


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "required": ["city"],
                                          "properties": {"city": {"type": "string"}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def request(**fields: object) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


def test_required_constrains_to_calls_of_the_tools() -> None:
    plan = tool_plan(request(tools=[WEATHER, CLOCK], tool_choice="required"))
    assert plan.mode == "required" and plan.names == NAMES
    schema = json.loads(plan.schema or "")
    jsonschema.validate([call("get_weather", {"city": "Paris"}), call("get_time", {})], schema)
    for wrong in ([], [call("get_weather", {})], [call("other", {})], {"name": "get_time"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
    one = tool_plan(request(tools=[WEATHER, CLOCK], tool_choice="required",
                            parallel_tool_calls=False))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([call("get_time", {})] * 2, json.loads(one.schema or ""))


def test_a_named_function_constrains_to_its_arguments() -> None:
    plan = tool_plan(request(tools=[WEATHER, CLOCK], tool_choice={
        "type": "function", "function": {"name": "get_time"}}))
    assert (plan.mode, plan.function) == ("named", "get_time")
    assert json.loads(plan.schema or "") == {"type": "object", "properties": {}}
    assert [t["function"]["name"] for t in json.loads(plan.tools or "")] == list(NAMES)


def test_auto_is_the_default_and_none_hides_the_tools() -> None:
    auto = tool_plan(request(tools=[WEATHER]))
    assert auto.mode == "auto" and auto.schema is None
    assert json.loads(auto.tools or "") == [WEATHER]
    assert tool_plan(request(tools=[WEATHER], tool_choice="none")) == ToolPlan()
    assert tool_plan(request()) == ToolPlan()


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"tool_choice": "auto"}, "tool_choice"),
     ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
      "tool_choice.function.name"),
     ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
     ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
      "tools[0].function.parameters"),
     ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
      "response_format")],
)
def test_bad_tool_requests_are_named(fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        tool_plan(request(**fields))
    assert error.value.param == param
