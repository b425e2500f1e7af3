"""The official `ollama` Python client against a running raylane serving the bundled model.

Generation tests run once per engine: llama.cpp (`smollm2-135m`) and vLLM on this CPU
(`smollm2-vllm`), both serving SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import jsonschema
import ollama
import pytest

from tests.e2e.conftest import MODEL, VLLM_MODEL, Running

QUESTION = [{"role": "user", "content": "Name three colors."}]
GREEDY = {"temperature": 0, "num_predict": 30}


@pytest.fixture(scope="module")
def client(cluster: Running) -> Iterator[ollama.Client]:
    with ollama.Client(host=cluster.url, timeout=120) as client:
        yield client



def test_chat_answers_from_the_model(client: ollama.Client, model: str) -> None:
    reply = client.chat(model=model, messages=QUESTION, options={"temperature": 0,
                                                                  "num_predict": 40})
    assert reply.message.role == "assistant"
    assert any(c in reply.message.content.lower() for c in ("red", "blue", "green"))
    assert reply.done and reply.done_reason == "stop" and reply.model == model
    assert reply.prompt_eval_count == 34  # SmolLM2's template with its default system prompt
    assert 0 < reply.eval_count < 40
    assert reply.total_duration >= reply.eval_duration > 0


def test_streamed_chat_matches_the_whole_answer(client: ollama.Client, model: str) -> None:
    whole = client.chat(model=model, messages=QUESTION, options=GREEDY)
    parts = list(client.chat(model=model, messages=QUESTION, options=GREEDY, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done_reason == whole.done_reason
    assert parts[-1].eval_count == whole.eval_count


def test_generate_streamed_and_whole_and_raw(client: ollama.Client, model: str) -> None:
    whole = client.generate(model=model, prompt="Name three colors.", options=GREEDY)
    chat = client.chat(model=model, messages=QUESTION, options=GREEDY)
    assert whole.response == chat.message.content  # the prompt is the user's turn
    parts = list(client.generate(model=model, prompt="Name three colors.", options=GREEDY,
                                 stream=True))
    assert "".join(p.response for p in parts) == whole.response and parts[-1].done
    raw = client.generate(model=model, prompt="The sky is", raw=True,
                          options={"temperature": 0, "num_predict": 5})
    assert raw.prompt_eval_count == 3 and raw.eval_count == 5 and raw.done_reason == "length"


def test_logprobs_are_the_same_streamed_or_not(client: ollama.Client, model: str) -> None:
    whole = client.chat(model=model, messages=QUESTION, options=GREEDY, logprobs=True,
                        top_logprobs=3)
    assert whole.logprobs and "".join(t.token for t in whole.logprobs) == whole.message.content
    for token in whole.logprobs:
        assert token.top_logprobs and len(token.top_logprobs) == 3 and token.logprob <= 0
        assert token.top_logprobs[0].token == token.token  # greedy
    parts = list(client.chat(model=model, messages=QUESTION, options=GREEDY, logprobs=True,
                             top_logprobs=3, stream=True))
    for part in parts:  # each line carries the tokens of its own text
        assert "".join(t.token for t in part.logprobs or []) == part.message.content
    streamed = [t for p in parts for t in p.logprobs or []]
    assert [t.token for t in streamed] == [t.token for t in whole.logprobs]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in whole.logprobs],
                                                          abs=1e-4)
    text = client.generate(model=model, prompt="Name three colors.", options=GREEDY,
                           logprobs=True)
    assert text.logprobs and "".join(t.token for t in text.logprobs) == text.response
    assert all(not t.top_logprobs for t in text.logprobs)
    assert client.chat(model=model, messages=QUESTION, options=GREEDY).logprobs is None


def test_format_gives_json_or_an_answer_matching_the_schema(client: ollama.Client,
                                                             model: str) -> None:
    city = {"type": "object", "required": ["city", "country"], "additionalProperties": False,
            "properties": {"city": {"type": "string", "maxLength": 20},
                           "country": {"type": "string", "maxLength": 20}}}
    question = [{"role": "user", "content": "Name a city in France."}]
    room = {"temperature": 0, "num_predict": 80}  # the grammar lets vLLM write whitespace
    answer = client.chat(model=model, messages=question, format=city, options=room)
    assert answer.done_reason == "stop"
    jsonschema.validate(json.loads(answer.message.content), city)
    parts = list(client.chat(model=model, messages=question, format=city, options=room,
                             stream=True))
    assert "".join(p.message.content for p in parts) == answer.message.content
    generated = client.generate(model=model, prompt="Describe Paris.", format="json",
                                options={"temperature": 0, "num_predict": 60})
    if generated.done_reason == "stop":  # a whole object; at the limit, its beginning
        assert isinstance(json.loads(generated.response), dict)
    assert generated.response.lstrip().startswith("{")


def test_num_predict_bounds_the_answer_exactly(client: ollama.Client, model: str) -> None:
    story = [{"role": "user", "content": "Write a long story about the sea."}]
    reply = client.chat(model=model, messages=story, options={"num_predict": 7})
    assert reply.eval_count == 7 and reply.done_reason == "length"


def test_seed_repeats_and_temperature_zero_is_greedy(client: ollama.Client, model: str) -> None:
    def ask(**options: float) -> str:
        return client.generate(model=model, prompt="My favourite animal is", raw=True,
                               options={"num_predict": 20, **options}).response

    assert ask(temperature=1.0, seed=11) == ask(temperature=1.0, seed=11)
    assert ask(temperature=1.0, seed=11) != ask(temperature=1.0, seed=12)
    assert ask(temperature=0) == ask(temperature=1.0, top_p=1e-6, seed=3)


def test_stop_cuts_the_answer(client: ollama.Client, model: str) -> None:
    prompt = "Count: one, two, three,"
    full = client.generate(model=model, prompt=prompt, raw=True,
                           options={"temperature": 0, "num_predict": 20}).response
    stop = full.split()[1]
    cut = client.generate(model=model, prompt=prompt, raw=True,
                          options={"temperature": 0, "num_predict": 20, "stop": [stop]})
    assert cut.response == full[: full.index(stop)] and cut.done_reason == "stop"


def test_keep_alive_and_engine_options_are_accepted(client: ollama.Client) -> None:
    reply = client.chat(model=MODEL, messages=QUESTION, keep_alive="5m",
                        options={"num_predict": 3, "num_ctx": 2048, "num_thread": 1})
    assert reply.eval_count == 3
    loaded = client.generate(model=MODEL, keep_alive=-1)  # Ollama's way to load a model
    assert loaded.done and loaded.done_reason == "load"


def test_unsupported_options_are_refused_by_name(client: ollama.Client) -> None:
    for kwargs, field in (({"options": {"repeat_penalty": 1.1}}, "repeat_penalty"),
                          ({"think": True}, "think"),
                          ({"format": {"type": 7}}, "format"),
                          # refused by the llama.cpp worker, which speaks of response_format
                          ({"format": {"type": "object", "properties": {
                              "n": {"type": "integer", "maximum": 9}}}}, "(field: format)"),
                          ({"top_logprobs": 2}, "top_logprobs"),
                          ({"options": {"mirostat": 2}}, "mirostat")):
        with pytest.raises(ollama.ResponseError) as error:
            client.chat(model=MODEL, messages=QUESTION, **kwargs)
        assert error.value.status_code == 400 and field in error.value.error


def test_tools_need_a_model_whose_template_takes_them(client: ollama.Client) -> None:
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as error:
            answer = client.chat(model=MODEL, messages=QUESTION, tools=[weather], stream=stream)
            list(answer) if stream else None  # type: ignore[arg-type]
        assert error.value.status_code == 400 and "chat template" in error.value.error
        assert "Ollama's tools" in error.value.error


def test_unknown_model_is_404(client: ollama.Client) -> None:
    for call in (lambda: client.chat(model="llama3", messages=QUESTION),
                 lambda: list(client.generate(model="llama3", prompt="hi", stream=True)),
                 lambda: client.show("llama3"), lambda: client.embed(model="llama3", input="x")):
        with pytest.raises(ollama.ResponseError) as error:
            call()
        assert error.value.status_code == 404 and "llama3" in error.value.error


def test_tags_ps_show_and_version(client: ollama.Client, cluster: Running) -> None:
    tags = {m.model: m for m in client.list().models}
    assert {MODEL, "gpt-4o-mini", VLLM_MODEL, "slow"} <= set(tags)
    details = tags[MODEL].details
    assert details.format == "gguf" and details.quantization_level == "Q4_1"
    assert tags[MODEL].size > 50_000_000
    assert tags["gpt-4o-mini"].details.parent_model == MODEL
    running = {m.model for m in client.ps().models}
    assert {MODEL, VLLM_MODEL, "slow"} <= running
    shown = client.show("gpt-4o-mini:latest")
    assert "raylane" in shown.modelfile and shown.modelinfo["raylane.model"] == MODEL
    assert shown.details.format == "gguf"
    version = httpx.get(f"{cluster.url}/api/version").json()["version"]
    assert version == httpx.get(f"{cluster.url}/openapi.json").json()["info"]["version"]


def test_embed_single_and_list_inputs(client: ollama.Client) -> None:
    one = client.embed(model=MODEL, input="The cat sat on the mat.")
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.",
             "Quarterly revenue grew by ten percent."]
    many = client.embed(model="gpt-4o-mini", input=texts)
    assert len(one.embeddings) == 1 and len(many.embeddings) == 3
    cat, kitten, revenue = many.embeddings
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert len(cat) == 576 and math.isclose(dot(cat, cat), 1.0, abs_tol=1e-4)
    assert one.embeddings[0] == pytest.approx(cat, abs=1e-5)
    assert dot(cat, kitten) > dot(cat, revenue)
    assert many.prompt_eval_count > len(texts)
    legacy = client.embeddings(model=MODEL, prompt="The cat sat on the mat.")
    assert legacy.embedding == pytest.approx(cat, abs=1e-5)


def test_pull_explains_that_models_come_from_the_config(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as error:
        client.pull("llama3")
    assert error.value.status_code == 400 and "cluster config" in error.value.error
    with pytest.raises(ollama.ResponseError) as error:
        client.delete(MODEL)
    assert error.value.status_code == 400


def test_priority_and_timeout_headers_apply(cluster: Running) -> None:
    bad = ollama.Client(host=cluster.url, headers={"X-Request-Timeout": "nope"})
    with bad, pytest.raises(ollama.ResponseError) as error:
        bad.chat(model=MODEL, messages=QUESTION)
    assert error.value.status_code == 400 and "x-request-timeout" in error.value.error
    with ollama.Client(host=cluster.url, headers={"X-Priority": "-5"}) as urgent:
        assert urgent.chat(model=MODEL, messages=QUESTION, options={"num_predict": 2}).done
