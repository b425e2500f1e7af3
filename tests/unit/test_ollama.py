"""The Ollama API without a cluster: what bodies are accepted or refused (by name), how
they become jobs, and that every answer and stream line has its documented shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from raylane.cluster.config import Config, ModelConfig, PoolConfig, QueueConfig
from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Embeddings,
    TextPrompt,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)
from raylane.router import ollama_schemas
from raylane.router.admission import admit
from raylane.router.errors import ollama_error_body
from raylane.router.jobs import Restart
from raylane.router.ollama import (
    OllamaGeneration,
    chat_job,
    chat_tools,
    generate_job,
    loaded,
    served_name,
)
from raylane.router.ollama_models import embed_response, not_managed, show, tags
from raylane.router.ollama_protocol import OllamaChatRequest, OllamaGenerateRequest
from raylane.router.requests import decode

MODEL = ModelConfig(name="m", aliases=["alias"], max_tokens=100,
                    queue=QueueConfig(timeout_s=20), pools=[PoolConfig(backend="sim")])
CONFIG = Config(models=[MODEL])
TICKET = admit(CONFIG, "m", None, {}, "chat")


def body(**fields: object) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       **fields}).encode()


def refused(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        req = decode(raw, OllamaChatRequest)
        chat_job(req, TICKET, "inbox", chat_tools(req))
    return error.value


def test_what_the_official_client_sends_is_accepted_and_streams_by_default() -> None:
    sent = body(tools=[], stream=False, keep_alive="5m", think=False, format="",
                options={"temperature": 0, "num_ctx": 2048, "top_k": 0, "repeat_penalty": 1})
    req = decode(sent, OllamaChatRequest)
    assert req.stream is False and decode(body(), OllamaChatRequest).stream is True
    job = chat_job(req, TICKET, "inbox")
    assert job.kind == "chat" and job.params.temperature == 0.0
    assert isinstance(job.prompt, ChatPrompt) and job.prompt.messages[0].content == "hi"


def test_options_map_to_sampling_parameters() -> None:
    options = {"num_predict": 7, "top_p": 0.5, "seed": 3, "stop": ["x"],
               "presence_penalty": 1.0, "frequency_penalty": -1.0, "temperature": 0.2,
               "top_k": 40, "min_p": 0.05}
    params = chat_job(decode(body(options=options), OllamaChatRequest), TICKET, "i").params
    assert (params.max_tokens, params.top_p, params.seed, params.stop) == (7, 0.5, 3, ["x"])
    assert (params.top_k, params.min_p) == (40, 0.05)
    assert (params.presence_penalty, params.frequency_penalty) == (1.0, -1.0)
    unlimited = chat_job(decode(body(options={"num_predict": -1}), OllamaChatRequest),
                         TICKET, "i").params
    assert unlimited.max_tokens is None and unlimited.limit == 100


@pytest.mark.parametrize(("fields", "param"), [
    ({"options": {"top_k": -1}}, "options.top_k"),
    ({"options": {"repeat_penalty": 1.1}}, "options.repeat_penalty"),
    ({"options": {"mirostat": 2}}, "options.mirostat"),
    ({"options": {"num_predict": 0}}, "options.num_predict"),
    ({"options": {"num_predict": 101}}, "options.num_predict"),
    ({"options": {"temperature": 3}}, "options.temperature"),
    ({"options": {"tfs_z": 1}}, "options.tfs_z"),
    ({"think": True}, "think"),
    ({"format": "xml"}, "format"),
    ({"format": {"type": 7}}, "format"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
     "tools[0].function.parameters"),
    ({"messages": [{"role": "user", "content": "x",
                    "tool_calls": [{"function": {"name": "f"}}]}]}, "messages[0].tool_calls"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
     "messages[0].images"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"surprise": 1}, "surprise"),
])
def test_what_would_change_the_answer_is_refused_by_name(fields: dict, param: str) -> None:
    error = refused(body(**fields))
    assert error.param == param and param in ollama_error_body(error)["error"]


def test_a_workers_refusal_of_a_schema_names_ollamas_format() -> None:
    error = InvalidRequest("llama.cpp cannot follow this JSON schema: its grammar would not "
                           "enforce `properties.n.maximum`.",
                           param="response_format.json_schema.schema")
    assert ollama_error_body(error)["error"].endswith("`properties.n.maximum`. (field: format)")


def test_generate_is_a_user_turn_or_with_raw_the_prompt_as_it_is() -> None:
    def job(**fields: object) -> Any:
        raw = json.dumps({"model": "m", "prompt": "The sky is", **fields}).encode()
        return generate_job(decode(raw, OllamaGenerateRequest), TICKET, "inbox")

    turn = job(system="Be brief.")
    assert turn.kind == "chat"
    assert [(m.role, m.content) for m in turn.prompt.messages] == [
        ("system", "Be brief."), ("user", "The sky is")]
    raw = job(raw=True)
    assert raw.kind == "completion" and raw.prompt == TextPrompt("The sky is")
    for field, value in (("suffix", "end"), ("template", "{{ .Prompt }}"), ("context", [1]),
                         ("images", ["aGk="])):
        with pytest.raises(InvalidRequest) as error:
            job(**{field: value})
        assert error.value.param == field


def test_the_latest_tag_names_the_model() -> None:
    assert served_name(CONFIG, "alias:latest") == "alias"
    assert served_name(CONFIG, "m") == "m" and served_name(CONFIG, "x:7b") == "x:7b"


class FakeRunner:
    """Replays a job's events as `JobRunner.run` yields them."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    async def run(self, jobs: list, model: ModelConfig, timeline: object = None
                  ) -> AsyncIterator[tuple[int, Any]]:
        for event in self.events:
            if isinstance(event, float):  # a pause of the engine, in seconds
                await asyncio.sleep(event)
                continue
            yield 0, event


DONE = Done(finish_reason="length", prompt_tokens=5, completion_tokens=3, text="!")


def generation(events: list[Any], chat: bool = True, **fields: object) -> OllamaGeneration:
    req = decode(body(**fields), OllamaChatRequest)
    tools = chat_tools(req)
    job = chat_job(req, TICKET, "inbox", tools)
    return OllamaGeneration(FakeRunner(events), job, MODEL, "alias", chat,  # type: ignore[arg-type]
                            tools)


async def lines(run: OllamaGeneration) -> list[dict]:
    stream = b"".join([piece async for piece in await run.stream()])
    return [json.loads(line) for line in stream.splitlines()]


async def test_a_whole_answer_has_ollamas_shape() -> None:
    answer = await generation([Delta(text="Hi", tokens=1), DONE]).collect()
    assert answer["message"] == {"role": "assistant", "content": "Hi!"}
    assert (answer["done"], answer["done_reason"], answer["eval_count"]) == (True, "length", 3)
    assert answer["prompt_eval_count"] == 5 and answer["model"] == "alias"
    msgspec.convert(answer, ollama_schemas.OllamaChatResponse)
    text = await generation([Delta(text="Hi", tokens=1), DONE], chat=False).collect()
    assert text["response"] == "Hi!"
    msgspec.convert(text, ollama_schemas.OllamaGenerateResponse)


async def test_durations_split_at_the_first_text() -> None:
    events = [0.05, Delta(text="Hi", tokens=1), 0.1, DONE]
    for answer in (await generation(events).collect(), (await lines(generation(events)))[-1]):
        assert 0.05e9 <= answer["prompt_eval_duration"] < 0.1e9
        assert 0.1e9 <= answer["eval_duration"] < answer["total_duration"]


async def test_a_stream_is_pieces_then_the_counts() -> None:
    out = await lines(generation([Delta(text="Hi", tokens=1), Delta(text="", tokens=0), DONE]))
    assert [line["done"] for line in out] == [False, False, True]
    assert "".join(line["message"]["content"] for line in out) == "Hi!"
    assert out[-1]["done_reason"] == "length" and out[-1]["total_duration"] >= 0
    for line in out:
        msgspec.convert(line, ollama_schemas.OllamaChatResponse)


async def test_a_worker_lost_before_any_text_is_retried_unseen() -> None:
    events = [Delta(text="lost", tokens=1), Restart(attempt=2), Delta(text="Hi", tokens=1), DONE]
    assert (await generation(events).collect())["message"]["content"] == "Hi!"
    out = await lines(generation([Restart(attempt=2), Delta(text="Hi", tokens=1), DONE]))
    assert "".join(line["message"]["content"] for line in out) == "Hi!"


async def test_a_worker_lost_after_text_ends_the_stream_with_an_error_line() -> None:
    out = await lines(generation([Delta(text="Hi", tokens=1), Restart(attempt=2),
                                  Delta(text="Hi", tokens=1), DONE]))
    assert out[0]["message"]["content"] == "Hi" and len(out) == 2
    assert "incomplete" in out[1]["error"]
    msgspec.convert(out[1], ollama_schemas.OllamaError)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
STOP = Done(finish_reason="stop", prompt_tokens=5, completion_tokens=20)


def test_tools_go_to_the_chat_template_and_the_conversation_keeps_its_calls() -> None:
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"index": 0, "name": "get_weather",
                                              "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "18 C, sunny", "tool_name": "get_weather"}]
    req = decode(body(messages=messages, tools=[WEATHER]), OllamaChatRequest)
    job = chat_job(req, TICKET, "inbox", chat_tools(req))
    assert isinstance(job.prompt, ChatPrompt) and not job.prompt.tools_forced
    assert json.loads(job.prompt.tools or "") == [WEATHER]
    _, assistant, tool = job.prompt.messages
    assert assistant.tool_calls == [ToolCall(id="call_1_0", name="get_weather",
                                             arguments='{"city": "Paris"}')]
    assert (tool.role, tool.name, tool.content) == ("tool", "get_weather", "18 C, sunny")
    no_tools = chat_job(decode(body(tools=[]), OllamaChatRequest), TICKET, "inbox",
                        chat_tools(decode(body(tools=[]), OllamaChatRequest)))
    assert isinstance(no_tools.prompt, ChatPrompt) and no_tools.prompt.tools is None


async def test_a_call_comes_back_whole_with_its_arguments_as_an_object() -> None:
    answer = await generation([Delta(text=CALL, tokens=20), STOP], tools=[WEATHER]).collect()
    (call,) = answer["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather",
                                "arguments": {"city": "Paris"}}
    assert call["id"].startswith("call_") and answer["message"]["content"] == ""
    assert answer["done_reason"] == "stop"
    msgspec.convert(answer, ollama_schemas.OllamaChatResponse)
    # Without tools the same text is the answer's content, as the model wrote it.
    plain = await generation([Delta(text=CALL, tokens=20), STOP]).collect()
    assert plain["message"]["content"] == CALL and "tool_calls" not in plain["message"]


async def test_a_stream_sends_the_text_then_each_call_whole_in_a_line() -> None:
    pieces = ["Let me look. <tool_", CALL.removeprefix("<tool_")[:30],
              CALL.removeprefix("<tool_")[30:]]
    out = await lines(generation([*(Delta(text=p, tokens=5) for p in pieces), STOP],
                                 tools=[WEATHER]))
    assert [line["done"] for line in out] == [False, False, True]
    assert out[0]["message"] == {"role": "assistant", "content": "Let me look."}
    assert out[1]["message"]["content"] == ""
    assert [c["function"]["arguments"] for c in out[1]["message"]["tool_calls"]] == [
        {"city": "Paris"}]
    for line in out:
        msgspec.convert(line, ollama_schemas.OllamaChatResponse)


async def test_text_held_back_by_a_lost_worker_is_dropped_with_it() -> None:
    events = [Delta(text="<tool", tokens=1), Restart(attempt=2), Delta(text=CALL, tokens=20),
              STOP]
    out = await lines(generation(events, tools=[WEATHER]))
    assert "error" not in out[-1]
    assert [c["function"]["name"] for c in out[0]["message"]["tool_calls"]] == ["get_weather"]
    assert all(line["message"]["content"] == "" for line in out)


def logprob(token: str, top: int = 0) -> TokenLogprob:
    alternatives = [TopLogprob(token.encode(), -0.1), TopLogprob(b"\xe2", -2.5)][:top]
    return TokenLogprob(token.encode(), -0.1, alternatives)


def test_format_constrains_the_answer_to_json_or_a_schema() -> None:
    def params(**fields: object) -> Any:
        return chat_job(decode(body(**fields), OllamaChatRequest), TICKET, "i").params

    assert params(format="json").json_object and params(format="json").json_schema is None
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    assert json.loads(params(format=schema).json_schema) == schema
    for text in (params(), params(format="")):
        assert not text.json_object and text.json_schema is None
    raw = json.dumps({"model": "m", "prompt": "x", "format": "json"}).encode()
    assert generate_job(decode(raw, OllamaGenerateRequest), TICKET, "i").params.json_object


def test_logprobs_ask_the_engine_for_the_alternatives() -> None:
    for fields, top in (({}, None), ({"logprobs": False}, None), ({"logprobs": True}, 0),
                        ({"logprobs": True, "top_logprobs": 2}, 2)):
        assert chat_job(decode(body(**fields), OllamaChatRequest), TICKET, "i"
                        ).params.logprobs == top
    raw = json.dumps({"model": "m", "prompt": "x", "raw": True, "logprobs": True,
                      "top_logprobs": 3}).encode()
    assert generate_job(decode(raw, OllamaGenerateRequest), TICKET, "i").params.logprobs == 3


async def test_a_whole_answer_carries_the_logprobs_of_its_tokens() -> None:
    events = [Delta(text="lost", tokens=1, logprobs=[logprob("lost", 2)]), Restart(attempt=2),
              Delta(text="Hi", tokens=1, logprobs=[logprob("Hi", 2)]),
              Done(finish_reason="length", prompt_tokens=5, completion_tokens=2, text="!",
                   logprobs=[logprob("!", 2)])]
    answer = await generation(events, logprobs=True, top_logprobs=2).collect()
    assert [e["token"] for e in answer["logprobs"]] == ["Hi", "!"]
    assert answer["logprobs"][0] == {
        "token": "Hi", "logprob": -0.1, "bytes": [72, 105],
        "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                         {"token": "\\xe2", "logprob": -2.5, "bytes": [226]}]}
    msgspec.convert(answer, ollama_schemas.OllamaChatResponse)
    plain = await generation([Delta(text="Hi", tokens=1), DONE]).collect()
    assert "logprobs" not in plain


async def test_each_line_carries_the_logprobs_of_its_text() -> None:
    pieces = ["Let me look. <tool_", CALL.removeprefix("<tool_")[:30],
              CALL.removeprefix("<tool_")[30:]]
    events = [*(Delta(text=p, tokens=1, logprobs=[logprob(p)]) for p in pieces),
              Done(finish_reason="stop", prompt_tokens=5, completion_tokens=4, text=" ",
                   logprobs=[logprob(" ")])]
    out = await lines(generation(events, tools=[WEATHER], logprobs=True))
    # The call's text was held back until it was whole: its tokens go with its line; the
    # last line carries the rest (here a space the call's reader drops).
    assert [[e["token"] for e in line.get("logprobs", [])] for line in out] == [
        pieces[:1], pieces[1:], [" "]]
    assert all("top_logprobs" not in e for line in out for e in line["logprobs"])
    for line in out:
        msgspec.convert(line, ollama_schemas.OllamaChatResponse)
    generated = await lines(generation([Delta(text="Hi", tokens=1, logprobs=[logprob("Hi")]),
                                        DONE], chat=False, logprobs=True))
    assert [line.get("logprobs", [{}])[0].get("token") for line in generated] == [
        "Hi", None, None]
    for line in generated:
        msgspec.convert(line, ollama_schemas.OllamaGenerateResponse)


def test_loading_answers_and_errors_match_their_schemas() -> None:
    msgspec.convert(loaded("m", True), ollama_schemas.OllamaChatResponse)
    msgspec.convert(loaded("m", False), ollama_schemas.OllamaGenerateResponse)
    error = ollama_error_body(not_managed("Pulling a model"))
    assert "cluster config" in error["error"]
    msgspec.convert(error, ollama_schemas.OllamaError)


def test_model_answers_match_their_schemas() -> None:
    state = SimpleNamespace(config=CONFIG, started=0)
    listed = tags(state)  # type: ignore[arg-type]
    assert [m["name"] for m in listed["models"]] == ["m", "alias"]
    assert listed["models"][1]["details"]["parent_model"] == "m"
    msgspec.convert(listed, ollama_schemas.OllamaTags)
    msgspec.convert(show(state, "alias"), ollama_schemas.OllamaShow)  # type: ignore[arg-type]
    vectors = Embeddings(vectors=b"\0\0\x80\x3f" * 2, dim=1,
                         prompt_tokens=2)
    answer = embed_response(vectors, "m", 10)
    assert answer["embeddings"] == [[1.0], [1.0]]
    msgspec.convert(answer, ollama_schemas.OllamaEmbedResponse)
