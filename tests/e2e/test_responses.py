"""OpenAI's Responses API through the official SDK (`client.responses`), on both engines
(llama.cpp and vLLM on this CPU, both serving SmolLM2-135M-Instruct, whose chat template
takes no tools: calls are forced).

A response is the chat completion of the same conversation: the same greedy text and
the same token counts.
"""

from __future__ import annotations

import json

import openai
import pytest

QUESTION = "Name three colors."
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                          "properties": {"city": {"type": "string", "maxLength": 20}}}}


def test_a_response_is_the_chat_completion_of_its_conversation(
    openai_client: openai.OpenAI, model: str,
) -> None:
    response = openai_client.responses.create(
        model=model, instructions="Be brief.", input=QUESTION, temperature=0,
        max_output_tokens=24)
    chat = openai_client.chat.completions.create(
        model=model, temperature=0, max_tokens=24,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": QUESTION}])
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.output_text == chat.choices[0].message.content
    assert response.usage is not None and chat.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        chat.usage.prompt_tokens, chat.usage.completion_tokens)
    finished = chat.choices[0].finish_reason == "stop"
    assert response.status == ("completed" if finished else "incomplete")
    cut = openai_client.responses.create(model=model, input=QUESTION, max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


def test_a_stream_builds_the_same_response(openai_client: openai.OpenAI, model: str) -> None:
    options = dict(model=model, input=QUESTION, temperature=0, max_output_tokens=24)
    whole = openai_client.responses.create(**options)  # type: ignore[call-overload]
    events = list(openai_client.responses.create(**options, stream=True))  # type: ignore[call-overload]
    assert events[0].type == "response.created" and events[-1].type in (
        "response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole.output_text == events[-1].response.output_text
    # The SDK's stream helper checks the sequence as it accumulates the response.
    with openai_client.responses.stream(**options) as stream:  # type: ignore[arg-type]
        final = stream.get_final_response()
    assert final.output_text == whole.output_text


def test_a_forced_call_and_its_output_carry_the_conversation_on(
    openai_client: openai.OpenAI, model: str,
) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = openai_client.responses.create(
        model=model, input=ask, tools=[WEATHER],  # type: ignore[arg-type, list-item]
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=40)
    [call] = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert set(json.loads(call.arguments)) == {"city"} and call.call_id.startswith("call_")
    answer = openai_client.responses.create(
        model=model, tools=[WEATHER], max_output_tokens=30, temperature=0,  # type: ignore[list-item]
        input=[*ask, call, {"type": "function_call_output", "call_id": call.call_id,  # type: ignore[list-item]
                            "output": "18 degrees and sunny"}], tool_choice="none")
    assert answer.output[0].type == "message" and answer.output_text


def test_what_raylane_cannot_do_is_a_400_naming_the_field(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.responses.create(model="smollm2-135m", input="hi",
                                       previous_response_id="resp_123")
    assert error.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.responses.create(model="smollm2-135m", input="hi",
                                       tools=[{"type": "web_search"}])
    assert error.value.body["param"] == "tools[0].type"  # type: ignore[index]
