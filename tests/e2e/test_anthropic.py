"""The official Anthropic SDK against a running raylane: the Messages API on `/v1/messages`.

Generation tests run once per engine: llama.cpp (`smollm2-135m`) and vLLM on this CPU
(`smollm2-vllm`), both serving SmolLM2-135M-Instruct.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import jsonschema
import openai
import pytest

from tests.e2e.conftest import MODEL, Running

QUESTION = [{"role": "user", "content": "Name three colors."}]
GREEDY = {"temperature": 0}
"""Sent as `extra_body`: this SDK's `create` no longer takes sampling parameters, the API
(and raylane) still does."""


@pytest.fixture(scope="module")
def client(cluster: Running) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=cluster.url, api_key="any", max_retries=0) as client:
        yield client




def ask(client: anthropic.Anthropic, model: str, max_tokens: int,
        **options: object) -> anthropic.types.Message:
    """A greedy answer to QUESTION."""
    return client.messages.create(model=model, messages=QUESTION,  # type: ignore[call-overload]
                                  max_tokens=max_tokens, extra_body=GREEDY, **options)


def _text(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_a_message_answers_with_the_usage_of_the_chat_prompt(
    client: anthropic.Anthropic, openai_client: openai.OpenAI, model: str,
) -> None:
    message = ask(client, model, 40)
    chat = openai_client.chat.completions.create(model=model, messages=QUESTION, max_tokens=40,
                                                 temperature=0)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == model
    assert _text(message) == chat.choices[0].message.content
    assert any(c in _text(message).lower() for c in ("red", "blue", "green"))
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert chat.usage is not None
    assert message.usage.input_tokens == chat.usage.prompt_tokens == 34
    assert message.usage.output_tokens == chat.usage.completion_tokens


def test_max_tokens_stops_the_message_exactly_there(client: anthropic.Anthropic,
                                                    model: str) -> None:
    message = ask(client, model, 3)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_the_stream_matches_the_whole_message(client: anthropic.Anthropic, model: str) -> None:
    whole = ask(client, model, 30)
    with client.messages.stream(model=model, messages=QUESTION, max_tokens=30,
                                extra_body=GREEDY) as stream:
        names = [event.type for event in stream]
        final = stream.get_final_message()
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "text" in names  # the SDK's event for each text delta
    assert _text(final) == _text(whole)
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_the_system_prompt_changes_the_answer(client: anthropic.Anthropic, model: str) -> None:
    plain = ask(client, model, 20)
    pirate = ask(client, model, 20, system="You are a pirate. Always answer with 'Arr!' first.")
    assert _text(pirate) != _text(plain)
    assert pirate.usage.input_tokens != plain.usage.input_tokens


def test_a_stop_sequence_ends_the_message_and_is_named(client: anthropic.Anthropic,
                                                       model: str) -> None:
    whole = ask(client, model, 30)
    text = _text(whole)
    stop = next(word for word in text.split() if text.index(word) > 0)
    message = ask(client, model, 30, stop_sequences=[stop])
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == stop
    assert _text(message) == text[: text.index(stop)]


CITY = {"type": "object", "required": ["city"], "additionalProperties": False,
        "properties": {"city": {"type": "string", "maxLength": 30}}}
TOOLS = [{"name": "get_weather", "description": "The current weather in a city",
          "input_schema": CITY},
         {"name": "get_time", "description": "The time now", "input_schema": {"type": "object"}}]
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_a_named_tool_is_called_streamed_or_not(client: anthropic.Anthropic,
                                                model: str) -> None:
    options = dict(model=model, messages=WEATHER_QUESTION, tools=TOOLS, max_tokens=40,
                   tool_choice={"type": "tool", "name": "get_weather"}, extra_body=GREEDY)
    whole = client.messages.create(**options)  # type: ignore[call-overload]
    assert whole.stop_reason == "tool_use"
    (call,) = whole.content
    assert call.type == "tool_use" and call.id.startswith("toolu_")
    assert call.name == "get_weather"
    jsonschema.validate(call.input, CITY)
    with client.messages.stream(**options) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert "input_json" in kinds  # the SDK's event for each piece of the input
    assert [(b.type, b.name, b.input) for b in streamed.content] == [  # type: ignore[union-attr]
        ("tool_use", "get_weather", call.input)]
    assert streamed.stop_reason == "tool_use" and streamed.usage == whole.usage


def test_any_calls_a_tool_and_its_result_carries_the_conversation_on(
    client: anthropic.Anthropic,
) -> None:
    reply = client.messages.create(model=MODEL, messages=WEATHER_QUESTION,  # type: ignore[arg-type]
                                   tools=TOOLS, tool_choice={"type": "any"}, max_tokens=60,
                                   extra_body=GREEDY)
    assert reply.stop_reason == "tool_use"
    calls = [b for b in reply.content if b.type == "tool_use"]
    assert calls and all(c.name in ("get_weather", "get_time") for c in calls)
    for call in calls:
        if call.name == "get_weather":
            jsonschema.validate(call.input, CITY)
    results = [{"type": "tool_result", "tool_use_id": c.id, "content": "Sunny, 24 degrees."}
               for c in calls]
    messages = [*WEATHER_QUESTION, {"role": "assistant", "content": reply.content},
                {"role": "user", "content": results}]
    answer = client.messages.create(model=MODEL, messages=messages,  # type: ignore[arg-type]
                                    tools=TOOLS, tool_choice={"type": "none"}, max_tokens=30,
                                    extra_body=GREEDY)
    assert [b.type for b in answer.content] == ["text"] and _text(answer)
    assert answer.stop_reason in ("end_turn", "max_tokens")
    question = client.messages.create(model=MODEL, messages=WEATHER_QUESTION, max_tokens=1,
                                      tools=TOOLS, tool_choice={"type": "none"})  # type: ignore[arg-type]
    # The call and its result reached the model's prompt.
    assert answer.usage.input_tokens > question.usage.input_tokens + 10


def test_auto_tools_need_a_template_that_takes_them(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=MODEL, messages=WEATHER_QUESTION,  # type: ignore[arg-type]
                               tools=TOOLS, max_tokens=20)
    assert "chat template" in error.value.message
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=MODEL, messages=WEATHER_QUESTION, max_tokens=20,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "Server tools" in error.value.message


def test_an_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as error:
        client.messages.create(model="no-such-model", messages=QUESTION, max_tokens=5)
    assert error.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_a_field_raylane_cannot_honour_is_a_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=MODEL, messages=QUESTION, max_tokens=5,
                               extra_body={"thinking": {"type": "enabled",
                                                        "budget_tokens": 1024}})
    assert "thinking" in error.value.message
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=MODEL, messages=QUESTION, max_tokens=5,
                                extra_body={"temperature": 1.5})
    assert "temperature" in error.value.message


def test_raylane_headers_work_on_messages(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, messages=QUESTION, max_tokens=2,
                                     metadata={"user_id": "u-1"},
                                     extra_headers={"X-Priority": "-5",
                                                    "X-Request-Timeout": "60"})
    assert message.usage.output_tokens == 2
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=MODEL, messages=QUESTION, max_tokens=2,
                               extra_headers={"X-Request-Timeout": "soon"})
    assert "x-request-timeout" in error.value.message
