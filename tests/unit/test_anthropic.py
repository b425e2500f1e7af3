"""The Anthropic Messages API without a cluster: bodies, refusals, answers and events.

What `anthropic.py` builds is checked against `anthropic_schemas.py` field for field (the
response Structs forbid unknown fields), with a scripted runner in place of the queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
import pytest

from raylane.cluster.config import Config, ModelConfig, PoolConfig
from raylane.cluster.errors import (
    EngineError,
    InvalidRequest,
    ModelNotFound,
    QueueFull,
    RaylaneError,
    RequestTimeout,
    ServiceUnavailable,
)
from raylane.cluster.messages import ChatPrompt, Delta, Done, Job, ToolCall
from raylane.router import anthropic_schemas
from raylane.router.admission import admit
from raylane.router.anthropic import MessageRun, message_id
from raylane.router.anthropic_protocol import MessagesRequest
from raylane.router.anthropic_requests import message_job, messages_tools
from raylane.router.errors import anthropic_error_body, error_response
from raylane.router.jobs import JobEvent, Restart
from raylane.router.requests import decode
from raylane.router.tools import ToolPlan
from raylane.workers.stops import StopMatcher
from tests.unit.scripted import Script, named_events

MODEL = ModelConfig(name="m", pools=[PoolConfig(backend="sim")])
CONFIG = Config(models=[MODEL])


def body(**fields: object) -> bytes:
    return json.dumps({"model": "m", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def job(raw: bytes) -> Job:
    req = decode(raw, MessagesRequest)
    ticket = admit(CONFIG, req.model, req.priority, {}, "message")
    return message_job(req, ticket, "inbox", messages_tools(req))


def refused(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        job(raw)
    return error.value


def test_system_prompt_and_text_blocks_become_chat_messages() -> None:
    made = job(body(system=[{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
                    messages=[{"role": "user", "content": [{"type": "text", "text": "a"},
                                                           {"type": "text", "text": "b"}]},
                              {"role": "assistant", "content": "c"}],
                    temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["\n\n"],
                    metadata={"user_id": "u"}))
    assert isinstance(made.prompt, ChatPrompt)
    assert [(m.role, m.content) for m in made.prompt.messages] == [
        ("system", "Be brief."), ("user", "ab"), ("assistant", "c")]
    assert (made.params.max_tokens, made.params.temperature, made.params.top_p) == (8, 0.5, 0.9)
    assert made.params.top_k == 40
    assert made.params.stop == ["\n\n"]
    # a request without X-Request-ID gets a new id, its answer `msg_<id>`
    assert len(made.request_id) == 32 and made.kind == "chat"


def test_without_a_system_prompt_only_the_messages_are_sent() -> None:
    made = job(body())
    assert isinstance(made.prompt, ChatPrompt)
    assert [m.role for m in made.prompt.messages] == ["user"]
    assert made.params.temperature == 1.0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]},
         "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "k": 1}]}]},
         "messages[0].content[0].k"),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        ({"frobnicate": True}, "frobnicate"),
    ],
)
def test_bad_fields_are_named(fields: dict, param: str) -> None:
    raw = json.loads(body())
    raw.update(fields)
    if fields.get("max_tokens", 0) is None:
        del raw["max_tokens"]
    assert refused(json.dumps(raw).encode()).param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
         "tools[0].type"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "data": "..."}}]}]},
         "messages[0].content[1].type"),
    ],
)
def test_what_raylane_cannot_honour_is_refused_by_name(fields: dict, param: str) -> None:
    error = refused(body(**fields))
    assert error.param == param and error.status == 400
    assert param.split("[")[0].split(".")[-1] in error.message or "image" in error.message


def message_run(events: Sequence[JobEvent], error: RaylaneError | None = None,
                **fields: object) -> MessageRun:
    req = decode(body(**fields), MessagesRequest)
    return MessageRun(runner=Script(events, error), job=job(body(**fields)),  # type: ignore[arg-type]
                      model=MODEL, id=message_id("msg-abc"), tools=messages_tools(req))


def done(finish: str = "stop", stop: str | None = None, text: str = "") -> Done:
    return Done(finish_reason=finish, prompt_tokens=7, completion_tokens=3,  # type: ignore[arg-type]
                text=text, stop=stop)


ANSWER: list[JobEvent] = [Delta(text="Hel", tokens=1), Restart(attempt=2),
                          Delta(text="Hello", tokens=1), Delta(text=" there", tokens=1)]


@pytest.mark.parametrize(
    ("end", "reason", "sequence"),
    [(done(), "end_turn", None), (done("length"), "max_tokens", None),
     (done(stop="\n"), "stop_sequence", "\n")],
)
async def test_the_whole_message_matches_its_schema(end: Done, reason: str,
                                                    sequence: str | None) -> None:
    answer = await message_run([*ANSWER, end]).collect()
    message = msgspec.convert(answer, anthropic_schemas.Message)
    assert message.id == "msg_abc" and message.model == "m"
    assert message.content == [anthropic_schemas.TextContent(text="Hello there")]
    assert (message.stop_reason, message.stop_sequence) == (reason, sequence)
    assert message.usage == anthropic_schemas.MessageUsage(input_tokens=7, output_tokens=3)


async def events(run: MessageRun) -> list[tuple[str, anthropic_schemas.StreamEvent]]:
    return await named_events(await run.stream(), anthropic_schemas.MessageEvent)


async def test_the_stream_is_anthropics_event_sequence() -> None:
    sent = await events(message_run([*ANSWER[1:], done("length", text="!")]))
    names = [name for name, _ in sent]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert all(name == event.__struct_config__.tag for name, event in sent)
    texts = [e.delta.text for _, e in sent if isinstance(e, anthropic_schemas.ContentBlockDelta)]
    assert texts == ["Hello", " there", "!"]  # a retry before any text is invisible
    end = sent[7][1]
    assert isinstance(end, anthropic_schemas.MessageDelta)
    assert end.delta == anthropic_schemas.StopDelta(stop_reason="max_tokens", stop_sequence=None)
    assert end.usage == anthropic_schemas.MessageUsage(input_tokens=7, output_tokens=3)


async def test_a_failure_after_text_ends_the_stream_with_an_error_event() -> None:
    run = message_run([Delta(text="Hi", tokens=1), Restart(attempt=2),
                       Delta(text="Hi", tokens=1)])
    sent = await events(run)
    assert [name for name, _ in sent][-2:] == ["content_block_delta", "error"]
    error = sent[-1][1]
    assert isinstance(error, anthropic_schemas.AnthropicError) and error.error.type == "api_error"
    lost = await events(message_run([Delta(text="Hi", tokens=1)], RequestTimeout("late")))
    assert lost[-1][1] == anthropic_schemas.AnthropicError(
        error=anthropic_schemas.AnthropicErrorDetail(type="timeout_error", message="late"))


async def test_a_failure_before_the_first_event_is_an_http_error() -> None:
    with pytest.raises(ServiceUnavailable):
        await message_run([], ServiceUnavailable("down")).stream()


@pytest.mark.parametrize(
    ("error", "kind"),
    [(InvalidRequest("x"), "invalid_request_error"), (ModelNotFound("x"), "not_found_error"),
     (QueueFull("x", retry_after=3), "rate_limit_error"), (EngineError("x"), "api_error"),
     (ServiceUnavailable("x"), "overloaded_error"), (RequestTimeout("x"), "timeout_error")],
)
def test_errors_on_messages_take_anthropics_shape_and_the_same_status(
    error: RaylaneError, kind: str
) -> None:
    response = error_response(error, "/v1/messages")
    assert response.status_code == error_response(error, "/v1/chat/completions").status_code
    answer = msgspec.json.decode(response.body, type=anthropic_schemas.AnthropicError)
    assert answer.error.type == kind
    assert anthropic_error_body(error) == msgspec.json.decode(response.body)
    if isinstance(error, QueueFull):
        assert response.headers["retry-after"] == "3"


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]


@pytest.mark.parametrize("error", _subclasses(RaylaneError), ids=lambda c: c.__name__)
def test_every_error_matches_the_anthropic_error_schema(error: type[RaylaneError]) -> None:
    exc = error("m", retry_after=1) if issubclass(error, QueueFull) else error("m")
    msgspec.convert(anthropic_error_body(exc), anthropic_schemas.AnthropicError)
    unrouted = RaylaneError("Method Not Allowed")
    unrouted.status = 405
    assert anthropic_error_body(unrouted)["error"]["type"] == "invalid_request_error"


WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
TIME = {"name": "get_time", "input_schema": {"type": "object"}, "cache_control": {
    "type": "ephemeral"}}


def test_tools_and_their_choice_become_openais() -> None:
    def plan(**fields: object) -> ToolPlan:
        return messages_tools(decode(body(**fields), MessagesRequest))

    auto = plan(tools=[WEATHER, TIME])
    assert (auto.mode, auto.names, auto.schema) == ("auto", ("get_weather", "get_time"), None)
    assert json.loads(auto.tools or "")[0] == {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": WEATHER["input_schema"]}}
    assert plan(tools=[WEATHER], tool_choice={"type": "auto"}) == plan(tools=[WEATHER])
    assert plan(tools=[WEATHER], tool_choice={"type": "none"}).mode == "none"
    anything = plan(tools=[WEATHER, TIME], tool_choice={"type": "any"})
    assert anything.mode == "required" and "maxItems" not in json.loads(anything.schema or "")
    one = plan(tools=[WEATHER, TIME],
               tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert json.loads(one.schema or "")["maxItems"] == 1
    made = job(body(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}))
    assert isinstance(made.prompt, ChatPrompt) and made.prompt.tools_forced
    assert json.loads(made.params.json_schema or "") == WEATHER["input_schema"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
         "tool_choice.name"),
        ({"tools": [{"name": "f", "input_schema": {"type": 7}}]}, "tools[0].input_schema"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        ({"tools": [{"name": "has space", "input_schema": {}}]}, "tools[0].name"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"messages": [{"role": "user", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]},
         "messages[0].content[0].type"),
        ({"messages": [{"role": "assistant", "content": [
            {"type": "text", "text": "x"},
            {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]},
         "messages[0].content[1].type"),
        ({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]},
         "messages[0].content[0].content[0].type"),
    ],
)
def test_bad_tools_are_named(fields: dict, param: str) -> None:
    error = refused(body(**fields))
    assert error.param == param and error.status == 400


def test_calls_and_their_results_carry_the_conversation_on() -> None:
    made = job(body(tools=[WEATHER, TIME], messages=[
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "no clock"}]},
            {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}]))
    assert isinstance(made.prompt, ChatPrompt) and not made.prompt.tools_forced
    user, assistant, weather, clock, again, empty = made.prompt.messages
    assert (user.role, assistant.role, assistant.content) == ("user", "assistant", "Looking.")
    assert assistant.tool_calls == [
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCall(id="toolu_2", name="get_time", arguments="{}")]
    assert [(m.role, m.tool_call_id, m.name, m.content) for m in (weather, clock, empty)] == [
        ("tool", "toolu_1", "get_weather", "18 C"),
        ("tool", "toolu_2", "get_time", "Error: no clock"),
        ("tool", "toolu_1", "get_weather", "")]
    assert (again.role, again.content) == ("user", "And tomorrow?")


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


async def test_a_whole_message_carries_each_call_as_a_tool_use_block() -> None:
    answer = await message_run([Delta(text="Let me look. " + CALL, tokens=20), done()],
                               tools=[WEATHER]).collect()
    message = msgspec.convert(answer, anthropic_schemas.Message)
    text, call = message.content
    assert text == anthropic_schemas.TextContent(text="Let me look.")
    assert isinstance(call, anthropic_schemas.ToolUseContent)
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    assert call.id.startswith("toolu_") and message.stop_reason == "tool_use"
    only = await message_run([Delta(text='{"city": "Rome"}', tokens=5), done()],
                             tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
                             ).collect()
    assert [b["type"] for b in only["content"]] == ["tool_use"]
    assert only["content"][0]["input"] == {"city": "Rome"}
    cut = await message_run([Delta(text='{"city": "Ro', tokens=5), done("length")],
                            tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
                            ).collect()
    assert cut["stop_reason"] == "max_tokens" and cut["content"][0]["input"] == '{"city": "Ro'
    msgspec.convert(cut, anthropic_schemas.Message)


async def test_a_stream_opens_a_block_per_call_and_streams_its_input() -> None:
    forced = await events(message_run(
        [Delta(text='{"city": ', tokens=3), Delta(text='"Rome"}', tokens=3), done()],
        tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}))
    assert [name for name, _ in forced] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    start = forced[2][1]
    assert isinstance(start, anthropic_schemas.ContentBlockStart)
    assert isinstance(start.content_block, anthropic_schemas.ToolUseContent)
    assert (start.index, start.content_block.name, start.content_block.input) == (
        0, "get_weather", {})
    inputs = [e.delta for _, e in forced if isinstance(e, anthropic_schemas.ContentBlockDelta)]
    assert all(isinstance(p, anthropic_schemas.InputJsonDelta) for p in inputs)
    assert "".join(p.partial_json for p in inputs) == '{"city": "Rome"}'  # type: ignore[union-attr]
    end = forced[6][1]
    assert isinstance(end, anthropic_schemas.MessageDelta) and end.delta.stop_reason == "tool_use"

    # The first attempt's "<tool" was held back, so the retry is invisible.
    auto = await events(message_run(
        [Delta(text="<tool", tokens=1), Restart(attempt=2),
         Delta(text="Let me look. <tool_", tokens=5), Delta(text=CALL[6:], tokens=15), done()],
        tools=[WEATHER]))
    assert "error" not in [name for name, _ in auto]
    pieces = [e.delta for _, e in auto if isinstance(e, anthropic_schemas.ContentBlockDelta)]
    assert pieces[0] == anthropic_schemas.TextDelta(text="Let me look.")
    blocks = [(e.index, type(e.content_block).__name__) for _, e in auto
              if isinstance(e, anthropic_schemas.ContentBlockStart)]
    assert blocks == [(0, "TextContent"), (1, "ToolUseContent")]
    assert [e.index for _, e in auto if isinstance(e, anthropic_schemas.ContentBlockStop)] == [
        0, 1]
    empty = await events(message_run([done()], tools=[WEATHER]))
    assert [name for name, _ in empty][2:4] == ["content_block_start", "content_block_stop"]


def test_the_stop_matcher_names_the_stop_string_it_cut_at() -> None:
    stops = StopMatcher(["END", "\n"])
    assert stops.feed("one\ntwo END") == "one"
    assert stops.matched == "\n"
    assert StopMatcher(["x"]).matched is None
