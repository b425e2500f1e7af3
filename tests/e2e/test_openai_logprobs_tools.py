"""Log probabilities, logit bias and tool calls through the official OpenAI SDK, on
llama.cpp and vLLM serving the bundled SmolLM2-135M (whose chat template takes no tools:
calls are forced)."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from tests.e2e import test_openai_sdk as sdk
from tests.e2e.conftest import Running

MODEL, QUESTION = sdk.MODEL, sdk.QUESTION
client = sdk.client  # the SDK tests' client; `model` (one per engine) is the e2e conftest's

WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
CITY = {"type": "object", "required": ["city"], "additionalProperties": False,
        "properties": {"city": {"type": "string", "maxLength": 30}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": CITY,
                                           "description": "The current weather in a city"}},
         {"type": "function", "function": {"name": "get_time", "description": "The time now"}}]
GET_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def test_chat_logprobs_are_the_same_streamed_or_not(client: openai.OpenAI, model: str) -> None:
    options = dict(model=model, messages=QUESTION, temperature=0, max_tokens=20, logprobs=True,
                   top_logprobs=3)
    whole = client.chat.completions.create(**options)  # type: ignore[call-overload]
    content = whole.choices[0].logprobs.content
    assert "".join(t.token for t in content) == whole.choices[0].message.content
    for token in content:
        assert bytes(token.bytes).decode() == token.token
        assert token.top_logprobs[0].token == token.token  # greedy
        assert len(token.top_logprobs) == 3 and token.logprob <= 0
    chunks = list(client.chat.completions.create(**options, stream=True))  # type: ignore[call-overload]
    streamed = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=1e-4)
    plain = client.chat.completions.create(model=model, messages=QUESTION, temperature=0,
                                           max_tokens=20)
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == whole.choices[0].message.content


def test_completion_logprobs_in_the_legacy_shape(client: openai.OpenAI) -> None:
    options = dict(model=MODEL, prompt="The sky is", temperature=0, max_tokens=8, logprobs=2)
    whole = client.completions.create(**options)  # type: ignore[call-overload]
    choice = whole.choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.text_offset == [len("".join(logprobs.tokens[:i]))
                                    for i in range(len(logprobs.tokens))]
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs,
                                 logprobs.top_logprobs, strict=True):
        assert top[token] == value and len(top) == 2  # the sampled token is the likeliest
    chunks = list(client.completions.create(**options, stream=True))  # type: ignore[call-overload]
    streamed = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert streamed == logprobs.tokens
    offsets = [o for c in chunks if c.choices[0].logprobs
               for o in c.choices[0].logprobs.text_offset]
    assert offsets == logprobs.text_offset


def test_echo_scores_continuations_as_lm_evaluation_harness_reads_them(
    client: openai.OpenAI, model: str, cluster: Running,
) -> None:
    # lm-evaluation-harness's `local-completions` loglikelihood: the context and the
    # continuation as token ids, echo, logprobs 1, max_tokens 1; the continuation's tokens
    # are token_logprobs[len(context):-1], greedy when each is its place's likeliest.
    def ids(text: str, special: bool) -> list[int]:
        body = {"model": model, "prompt": text, "add_special_tokens": special}
        return list(httpx.post(f"{cluster.url}/tokenize", json=body, timeout=60).json()["tokens"])

    context = ids("The capital of France is", True)
    scores = {}
    for continuation in (" Paris", " a banana"):
        prompt = context + ids(continuation, False)
        out = client.completions.create(model=model, prompt=[prompt], temperature=0,
                                        max_tokens=1, logprobs=1, seed=1234, echo=True)
        choice, usage = out.choices[0], out.usage
        assert choice.logprobs is not None and usage is not None
        logprobs = choice.logprobs.token_logprobs or []
        top = choice.logprobs.top_logprobs or []
        assert len(logprobs) == len(top) == len(prompt) + 1
        assert logprobs[0] is None and top[0] is None  # nothing precedes the first token
        assert (usage.prompt_tokens, usage.completion_tokens) == (len(prompt), 1)
        assert choice.text.startswith("The capital of France is" + continuation)
        assert "".join(choice.logprobs.tokens or []) == choice.text
        scored = list(zip(logprobs[len(context):-1], top[len(context):-1], strict=True))
        scores[continuation] = (sum(v for v, _ in scored),  # type: ignore[misc]
                                all(v == max(t.values()) for v, t in scored))  # type: ignore[union-attr]
    assert scores[" Paris"][0] > scores[" a banana"][0]
    assert scores[" Paris"][1] and not scores[" a banana"][1]
    alone = client.completions.create(model=model, prompt="The sky", max_tokens=0, echo=True,
                                      stream=True, stream_options={"include_usage": True})
    chunks = list(alone)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "The sky"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 0


def test_logit_bias_steers_the_sampler(client: openai.OpenAI, model: str) -> None:
    forced = client.chat.completions.create(model=model, messages=QUESTION, temperature=0,
                                            max_tokens=5, logprobs=True,
                                            logit_bias={"1000": 100})
    tokens = [t.token for t in forced.choices[0].logprobs.content]  # type: ignore[union-attr]
    assert tokens == ["()"] * 5  # SmolLM2's token 1000, five times
    text = client.completions.create(model=model, prompt="The sky is", temperature=0,
                                     max_tokens=3, logit_bias={"1000": 100})
    assert text.choices[0].text == forced.choices[0].message.content[:len(text.choices[0].text)]
    plain = client.chat.completions.create(model=model, messages=QUESTION, temperature=0,
                                           max_tokens=5)
    assert plain.choices[0].message.content != forced.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=model, messages=QUESTION, max_tokens=5,
                                       logit_bias={"10000000": 1})
    assert error.value.body["param"] == "logit_bias"  # type: ignore[index]
    assert "[0, 49152)" in error.value.message


def test_a_named_function_is_called_streamed_or_not(client: openai.OpenAI, model: str) -> None:
    options = dict(model=model, messages=WEATHER_QUESTION, tools=TOOLS, tool_choice=GET_WEATHER,
                   temperature=0, max_tokens=40)
    whole = client.chat.completions.create(**options)  # type: ignore[call-overload]
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), CITY)
    chunks = list(client.chat.completions.create(**options, stream=True))  # type: ignore[call-overload]
    pieces = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert pieces[0].id.startswith("call_") and pieces[0].function.name == "get_weather"
    assert {p.index for p in pieces} == {0}
    assert "".join(p.function.arguments or "" for p in pieces) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_required_calls_a_tool_and_the_conversation_goes_on(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=WEATHER_QUESTION, tools=TOOLS,
                                           tool_choice="required", temperature=0, max_tokens=60)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name in ("get_weather", "get_time")
        if call.function.name == "get_weather":
            jsonschema.validate(json.loads(call.function.arguments), CITY)
    results = [{"role": "tool", "tool_call_id": c.id, "content": "Sunny, 24 degrees."}
               for c in choice.message.tool_calls]
    messages = [*WEATHER_QUESTION, choice.message.model_dump(exclude_none=True), *results]
    answer = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS,
                                            tool_choice="none", temperature=0, max_tokens=30)
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_auto_needs_a_template_that_takes_tools(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=WEATHER_QUESTION, tools=TOOLS)
    assert error.value.body["param"] == "tool_choice"  # type: ignore[index]
    assert "chat template" in error.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
     ({"top_logprobs": 2}, "top_logprobs"),
     ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
      "tool_choice.function.name"),
     ({"tool_choice": "required"}, "tool_choice"),
     ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id")],
)
def test_bad_logprob_and_tool_fields_are_400_naming_them(client: openai.OpenAI, fields: dict,
                                                         param: str) -> None:
    body = {"model": MODEL, "messages": QUESTION, **fields}
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**body)  # type: ignore[call-overload]
    assert error.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=MODEL, prompt="x", logprobs=6)
    assert error.value.body["param"] == "logprobs"  # type: ignore[index]
