"""The Responses API without a cluster: bodies, refusals, answers and events.

What `responses.py` builds is checked against `responses_schemas.py` field for field (the
response Structs forbid unknown fields), with a scripted runner in place of the queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
import pytest

from raylane.cluster.config import Config, ModelConfig, PoolConfig
from raylane.cluster.errors import InvalidRequest, RaylaneError, RequestTimeout
from raylane.cluster.messages import ChatPrompt, Delta, Done, Job, Message, ToolCall
from raylane.router import responses_schemas as rs
from raylane.router.admission import admit
from raylane.router.jobs import JobEvent, Restart
from raylane.router.requests import decode
from raylane.router.responses import ResponseRun, response_id
from raylane.router.responses_protocol import ResponsesRequest
from raylane.router.responses_requests import response_job, response_tools
from tests.unit.scripted import Script, named_events

MODEL = ModelConfig(name="m", pools=[PoolConfig(backend="sim")])
CONFIG = Config(models=[MODEL])
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def body(**fields: object) -> bytes:
    return json.dumps({"model": "m", "input": "hi", **fields}).encode()


def job(raw: bytes) -> Job:
    req = decode(raw, ResponsesRequest)
    ticket = admit(CONFIG, req.model, req.priority, {}, "response", req.user)
    return response_job(req, ticket, "inbox", response_tools(req))


def refused(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        job(raw)
    return error.value


def messages(raw: bytes) -> list[Message]:
    prompt = job(raw).prompt
    assert isinstance(prompt, ChatPrompt)
    return prompt.messages


def test_instructions_and_input_become_chat_messages() -> None:
    assert messages(body(instructions="Be brief.")) == [
        Message(role="system", content="Be brief."), Message(role="user", content="hi")]
    items = [{"role": "developer", "content": "Answer in French."},
             {"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "Weather "},
                          {"type": "input_text", "text": "in Paris?"}]}]
    assert messages(body(input=items)) == [Message(role="developer", content="Answer in French."),
                                           Message(role="user", content="Weather in Paris?")]
    made = job(body(max_output_tokens=9, temperature=0.5, top_p=0.9))
    assert (made.kind, made.params.max_tokens, made.params.temperature, made.params.top_p) == (
        "chat", 9, 0.5, 0.9)


def test_calls_and_their_outputs_carry_the_conversation_on() -> None:
    items = [{"role": "user", "content": "Weather in Paris and Rome?"},
             {"role": "assistant", "content": [{"type": "output_text", "text": "Looking.",
                                                "annotations": []}]},
             {"type": "function_call", "call_id": "c1", "name": "get_weather",
              "arguments": '{"city": "Paris"}'},
             {"type": "function_call", "call_id": "c2", "name": "get_weather",
              "arguments": '{"city": "Rome"}', "id": "fc_1", "status": "completed"},
             {"type": "function_call_output", "call_id": "c1", "output": "18C"},
             {"type": "function_call_output", "call_id": "c2", "output": "21C"}]
    assert messages(body(input=items, tools=[WEATHER]))[1:] == [
        Message(role="assistant", content="Looking.", tool_calls=[
            ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}'),
            ToolCall(id="c2", name="get_weather", arguments='{"city": "Rome"}')]),
        Message(role="tool", content="18C", tool_call_id="c1", name="get_weather"),
        Message(role="tool", content="21C", tool_call_id="c2", name="get_weather")]
    alone = messages(body(input=items[2:3]))
    assert alone == [Message(role="assistant", content="", tool_calls=[
        ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')])]


def test_tools_choice_and_text_format_reach_the_job() -> None:
    auto = job(body(tools=[WEATHER]))
    assert isinstance(auto.prompt, ChatPrompt) and auto.prompt.tools is not None
    assert not auto.prompt.tools_forced and auto.params.json_schema is None
    named = job(body(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}))
    assert json.loads(named.params.json_schema or "")["required"] == ["city"]
    assert job(body(tools=[WEATHER], tool_choice="none")).prompt == ChatPrompt(
        messages=[Message(role="user", content="hi")])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = job(body(text={"format": {"type": "json_schema", "name": "x", "schema": schema}}))
    assert json.loads(fmt.params.json_schema or "") == schema
    assert job(body(text={"format": {"type": "json_object"}})).params.json_object


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "http://x"}]}]}, "input[0].content[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
         "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
         "input[0].call_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "name": "has space"}]}, "tools[0].name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
         "tool_choice.name"),
        ({"tools": [WEATHER], "tool_choice": "required",
          "text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}},
         "text.format.schema"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"truncation": "auto"}, "truncation"),
        ({"input": []}, "input"),
        ({"frobnicate": True}, "frobnicate"),
    ],
)
def test_what_raylane_cannot_honour_or_parse_is_refused_by_name(fields: dict,
                                                                param: str) -> None:
    error = refused(body(**fields))
    assert error.param == param and error.status == 400


def response_run(events: Sequence[JobEvent], error: RaylaneError | None = None,
                 **fields: object) -> ResponseRun:
    req = decode(body(**fields), ResponsesRequest)
    return ResponseRun(runner=Script(events, error), job=job(body(**fields)),  # type: ignore[arg-type]
                       model=MODEL, id=response_id("resp-abc"), request=req,
                       tools=response_tools(req))


def done(finish: str = "stop", text: str = "") -> Done:
    return Done(finish_reason=finish, prompt_tokens=7, completion_tokens=3,  # type: ignore[arg-type]
                text=text)


ANSWER: list[JobEvent] = [Delta(text="Hel", tokens=1), Restart(attempt=2),
                          Delta(text="Hello", tokens=1), Delta(text=" there", tokens=1)]


@pytest.mark.parametrize(("end", "status"), [(done(), "completed"), (done("length"), "incomplete")])
async def test_the_whole_response_matches_its_schema(end: Done, status: str) -> None:
    answer = await response_run([*ANSWER, end], instructions="Be brief.").collect()
    response = msgspec.convert(answer, rs.Response)
    assert (response.id, response.model, response.status) == ("resp_abc", "m", status)
    [message] = response.output
    assert isinstance(message, rs.OutputMessage) and message.status == status
    assert [part.text for part in message.content] == ["Hello there"]
    assert response.usage == rs.ResponseUsage(
        input_tokens=7, input_tokens_details=rs.InputTokensDetails(cached_tokens=0),
        output_tokens=3, output_tokens_details=rs.OutputTokensDetails(reasoning_tokens=0),
        total_tokens=10)
    assert response.instructions == "Be brief." and response.store is False
    reason = response.incomplete_details.reason if response.incomplete_details else None
    assert reason == ("max_output_tokens" if status == "incomplete" else None)


async def events(run: ResponseRun) -> list[rs.ResponseEvent]:
    sent = await named_events(await run.stream(), rs.ResponseStreamEvent)
    assert all(name == event.__struct_config__.tag for name, event in sent)
    assert [event.sequence_number for _, event in sent] == list(range(len(sent)))
    return [event for _, event in sent]


def names(sent: list[rs.ResponseEvent]) -> list[str]:
    return [str(e.__struct_config__.tag).removeprefix("response.") for e in sent]


async def test_the_stream_is_openais_event_sequence() -> None:
    sent = await events(response_run([*ANSWER[1:], done(text="!")]))
    assert names(sent) == ["created", "in_progress", "output_item.added", "content_part.added",
                           "output_text.delta", "output_text.delta", "output_text.delta",
                           "output_text.done", "content_part.done", "output_item.done",
                           "completed"]
    deltas = [e.delta for e in sent if isinstance(e, rs.OutputTextDelta)]
    assert deltas == ["Hello", " there", "!"]  # a retry before any output is invisible
    first, last = sent[0], sent[-1]
    assert isinstance(first, rs.ResponseCreated) and first.response.status == "in_progress"
    assert isinstance(last, rs.ResponseCompleted)
    [message] = last.response.output
    assert isinstance(message, rs.OutputMessage)
    assert message.content[0].text == "Hello there!" and last.response.usage is not None
    cut = await events(response_run([Delta(text="Hi", tokens=1), done("length")]))
    assert isinstance(cut[-1], rs.ResponseIncomplete)
    assert cut[-1].response.status == "incomplete"


async def test_a_failure_after_output_ends_the_stream_with_an_error_event() -> None:
    sent = await events(response_run([Delta(text="Hi", tokens=1), Restart(attempt=2)]))
    assert names(sent)[-2:] == ["output_text.delta", "error"]
    assert isinstance(sent[-1], rs.ResponseError) and sent[-1].code == "job_lost"
    late = await events(response_run([Delta(text="Hi", tokens=1)], RequestTimeout("late")))
    assert isinstance(late[-1], rs.ResponseError) and late[-1].message == "late"


async def test_calls_are_function_call_items_whole_and_streamed() -> None:
    answer = await response_run([Delta(text="Let me look. " + CALL, tokens=20), done()],
                                tools=[WEATHER]).collect()
    response = msgspec.convert(answer, rs.Response)
    text, call = response.output
    assert isinstance(text, rs.OutputMessage) and text.content[0].text == "Let me look."
    assert isinstance(call, rs.FunctionCallOutput)
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert response.tools[0].name == "get_weather" and response.tool_choice == "auto"

    forced = await events(response_run(
        [Delta(text='{"city": ', tokens=3), Delta(text='"Rome"}', tokens=3), done()],
        tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}))
    assert names(forced) == ["created", "in_progress", "output_item.added",
                             "function_call_arguments.delta", "function_call_arguments.delta",
                             "function_call_arguments.done", "output_item.done", "completed"]
    end = forced[5]
    assert isinstance(end, rs.ArgumentsDone)
    assert (end.name, end.arguments) == ("get_weather", '{"city": "Rome"}')
    last = forced[-1]
    assert isinstance(last, rs.ResponseCompleted)
    assert [type(item).__name__ for item in last.response.output] == ["FunctionCallOutput"]

    auto = await events(response_run([Delta(text="Let me look. <tool_", tokens=5),
                                      Delta(text=CALL[6:], tokens=15), done()], tools=[WEATHER]))
    added = [e.item for e in auto if isinstance(e, rs.OutputItemAdded)]
    assert [(type(i).__name__, i.status) for i in added] == [
        ("OutputMessage", "in_progress"), ("FunctionCallOutput", "in_progress")]
    assert [e.output_index for e in auto if isinstance(e, rs.OutputItemDone)] == [0, 1]
    empty = await events(response_run([done()], tools=[WEATHER]))
    assert names(empty)[2:4] == ["output_item.added", "content_part.added"]
