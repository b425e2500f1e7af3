"""Choices in OpenAI's shapes: log probabilities and tool calls, whole and streamed alike;
and how the request fields that ask for them reach the job."""

from __future__ import annotations

import json

import pytest

from raylane.cluster.config import Config, ModelConfig, PoolConfig
from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Message,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)
from raylane.router.admission import admit
from raylane.router.protocol import ChatCompletionRequest, CompletionRequest
from raylane.router.requests import chat_jobs, completion_jobs, decode
from raylane.router.shapes import ChatShape, CompletionShape, Shape
from raylane.router.tools import ToolPlan


def lp(token: bytes, logprob: float, *top: tuple[bytes, float]) -> TokenLogprob:
    return TokenLogprob(token, logprob, [TopLogprob(t, p) for t, p in top])


HELLO = [lp(b"Hel", -0.5, (b"Hel", -0.5), (b"Hi", -1.0)), lp(b"lo", -0.25, (b"lo", -0.25))]
# The first two bytes of "€" (a token may end inside a character), then its last byte.
EURO = [lp(b"\xe2\x82", -1.5), lp(b"\xac", -0.1)]


def run(shape: Shape, events: list[Delta | Done]) -> tuple[dict, list[dict]]:
    """The whole choice, and the choices of every stream chunk, for the same events."""
    whole, stream = shape.choice(0), shape.choice(0)
    chunks = []
    for i, event in enumerate(events):
        whole.add(event)
        chunks += stream.chunks(event, first=i == 0)
    finish = events[-1].finish_reason if isinstance(events[-1], Done) else "stop"
    return whole.final(finish), chunks


def done(finish: str = "stop", **fields: object) -> Done:
    return Done(finish_reason=finish, prompt_tokens=3, completion_tokens=3,  # type: ignore[arg-type]
                **fields)  # type: ignore[arg-type]


EVENTS = [Delta(text="Hello", tokens=2, logprobs=HELLO), Delta(text="€", tokens=2, logprobs=EURO),
          done(logprobs=[])]


def test_chat_logprobs_are_openais_and_the_stream_carries_the_same() -> None:
    choice, chunks = run(ChatShape(logprobs=True), EVENTS)
    content = choice["logprobs"]["content"]
    assert content[0] == {"token": "Hel", "logprob": -0.5, "bytes": [72, 101, 108],
                          "top_logprobs": [{"token": "Hel", "logprob": -0.5,
                                            "bytes": [72, 101, 108]},
                                           {"token": "Hi", "logprob": -1.0, "bytes": [72, 105]}]}
    assert [c["token"] for c in content] == ["Hel", "lo", "\\xe2\\x82", "\\xac"]
    assert bytes(b for c in content for b in c["bytes"]).decode() == "Hello€"
    assert choice["logprobs"]["refusal"] is None
    streamed = [e for c in chunks for e in c["logprobs"]["content"]]
    assert streamed == content
    assert [len(c["logprobs"]["content"]) for c in chunks] == [2, 2, 0]


def test_without_logprobs_choices_say_null() -> None:
    choice, chunks = run(ChatShape(), EVENTS)
    assert choice["logprobs"] is None and all(c["logprobs"] is None for c in chunks)
    text, pieces = run(CompletionShape(), EVENTS)
    assert text["logprobs"] is None and all(c["logprobs"] is None for c in pieces)


def test_completion_logprobs_are_the_legacy_shape_with_offsets_across_chunks() -> None:
    choice, chunks = run(CompletionShape(logprobs=True), EVENTS)
    assert choice["logprobs"] == {
        "tokens": ["Hel", "lo", "\\xe2\\x82", "\\xac"],
        "token_logprobs": [-0.5, -0.25, -1.5, -0.1],
        "top_logprobs": [{"Hel": -0.5, "Hi": -1.0}, {"lo": -0.25}, {"\\xe2\\x82": -1.5},
                         {"\\xac": -0.1}],
        "text_offset": [0, 3, 5, 5],  # "€" is one character, begun by the first of its tokens
    }
    merged: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                               "text_offset": []}
    for chunk in chunks:
        for key, values in chunk["logprobs"].items():
            merged[key] += values
    assert merged == choice["logprobs"]


def test_an_echoed_prompt_leads_the_text_and_its_first_token_has_no_logprob() -> None:
    prompt = [TokenLogprob(b"The", None), lp(b" sky", -4.0, (b" sky", -4.0))]
    events = [Delta(text="The sky", tokens=0, logprobs=prompt),
              Delta(text=" is", tokens=1, logprobs=[lp(b" is", -0.5, (b" is", -0.5))]),
              done(logprobs=[])]
    choice, chunks = run(CompletionShape(logprobs=True), events)
    assert choice["text"] == "The sky is"
    assert choice["logprobs"] == {
        "tokens": ["The", " sky", " is"], "token_logprobs": [None, -4.0, -0.5],
        "top_logprobs": [None, {" sky": -4.0}, {" is": -0.5}], "text_offset": [0, 3, 7]}
    assert [c["text"] for c in chunks] == ["The sky", " is", ""]  # the prompt goes out first
    assert [t for c in chunks for t in c["logprobs"]["token_logprobs"]] == [None, -4.0, -0.5]


def test_held_back_text_keeps_its_logprobs_until_it_goes_out() -> None:
    # Text that may begin a tool call waits, and so do its tokens' log probabilities.
    shape = ChatShape(logprobs=True, tools=ToolPlan("auto", ("f",), tools="[]"))
    events = [Delta(text="Hi <tool", tokens=2, logprobs=HELLO),
              Delta(text="kit>", tokens=1, logprobs=EURO[:1]), done()]
    choice, chunks = run(shape, events)
    assert choice["message"]["content"] == "Hi <toolkit>"
    sent = [(c["delta"].get("content"), len(c["logprobs"]["content"])) for c in chunks]
    assert sent == [("Hi", 2), (" <toolkit>", 1), (None, 0)]


CALL = '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'


@pytest.mark.parametrize("plan", [ToolPlan("auto", ("f",), tools="[]"),
                                  ToolPlan("required", ("f",), tools="[]", schema="{}"),
                                  ToolPlan("named", ("f",), "f", "[]", "{}")])
def test_tool_calls_whole_and_streamed(plan: ToolPlan) -> None:
    text = {"auto": f"Sure.\n{CALL}", "required": '[{"name": "f", "arguments": {"x": 1}}]',
            "named": '{"x": 1}'}[plan.mode]
    choice, chunks = run(ChatShape(tools=plan), [Delta(text=text[:9], tokens=1),
                                                 Delta(text=text[9:], tokens=1), done()])
    message = choice["message"]
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "f"
    assert json.loads(call["function"]["arguments"]) == {"x": 1}
    assert message["content"] == ("Sure." if plan.mode == "auto" else None)
    assert choice["finish_reason"] == "tool_calls"
    assert chunks[0]["delta"]["role"] == "assistant"
    pieces = [t for c in chunks for t in c["delta"].get("tool_calls", [])]
    assert pieces[0]["id"].startswith("call_") and pieces[0]["function"]["name"] == "f"
    assert "".join(p["function"]["arguments"] for p in pieces) == call["function"]["arguments"]
    assert [c["finish_reason"] for c in chunks][-1] == "tool_calls"


def test_a_call_cut_by_max_tokens_finishes_with_length() -> None:
    plan = ToolPlan("named", ("f",), "f", "[]", "{}")
    choice, chunks = run(ChatShape(tools=plan), [Delta(text='{"x": ', tokens=2),
                                                 done("length")])
    assert choice["finish_reason"] == chunks[-1]["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"x": '


def test_auto_without_a_call_is_a_plain_answer() -> None:
    plan = ToolPlan("auto", ("f",), tools="[]")
    choice, chunks = run(ChatShape(tools=plan), [Delta(text="No tools needed.", tokens=3),
                                                 done()])
    assert choice["message"] == {"role": "assistant", "content": "No tools needed.",
                                 "refusal": None}
    assert choice["finish_reason"] == "stop" and "tool_calls" not in chunks[0]["delta"]


CONFIG = Config(models=[ModelConfig(name="m", pools=[PoolConfig(backend="sim")])])


def chat(**fields: object) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return decode(json.dumps(body).encode(), ChatCompletionRequest)


def test_logprob_fields_reach_the_job() -> None:
    ticket = admit(CONFIG, "m", None, {}, "chat")
    assert chat_jobs(chat(logprobs=True), ticket, "i")[0].params.logprobs == 0
    assert chat_jobs(chat(logprobs=True, top_logprobs=20), ticket, "i")[0].params.logprobs == 20
    assert chat_jobs(chat(logprobs=False), ticket, "i")[0].params.logprobs is None
    body = json.dumps({"model": "m", "prompt": "x", "logprobs": 5}).encode()
    job = completion_jobs(decode(body, CompletionRequest), admit(CONFIG, "m", None, {}, "text"),
                          "i")[0]
    assert job.params.logprobs == 5


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"top_logprobs": 2}, "top_logprobs"), ({"logprobs": True, "top_logprobs": 21},
                                              "top_logprobs"),
     ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
     ({"messages": [{"role": "tool", "content": "18C"}]}, "messages[0].tool_call_id"),
     ({"messages": [{"role": "user", "content": "x", "tool_calls": [
         {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
      "messages[0].tool_calls"),
     ({"tools": [{"type": "custom", "custom": {}}]}, "tools[0].type")],
)
def test_bad_logprob_and_tool_fields_are_named(fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        chat_jobs(chat(**fields), admit(CONFIG, "m", None, {}, "chat"), "i")
    assert error.value.param == param


def test_completion_logprobs_are_at_most_five() -> None:
    body = json.dumps({"model": "m", "prompt": "x", "logprobs": 6}).encode()
    with pytest.raises(InvalidRequest) as error:
        decode(body, CompletionRequest)
    assert error.value.param == "logprobs"


def test_a_conversation_with_tool_calls_reaches_the_job() -> None:
    tool = {"type": "function", "function": {"name": "get_weather"}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    (job,) = chat_jobs(chat(messages=messages, tools=[tool], tool_choice="required"),
                       admit(CONFIG, "m", None, {}, "chat"), "i")
    assert job.prompt == ChatPrompt(
        messages=[Message(role="user", content="Weather in Paris?"),
                  Message(role="assistant", content="", tool_calls=[
                      ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')]),
                  Message(role="tool", content="18C", tool_call_id="call_1")],
        tools=json.dumps([tool]), tools_forced=True)
    assert json.loads(job.params.json_schema or "")["type"] == "array"
