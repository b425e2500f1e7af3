"""The official OpenAI SDK against a running raylane serving the bundled model.

Generation tests run once per engine: llama.cpp (`smollm2-135m`) and vLLM on this CPU
(`smollm2-vllm`), both serving SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.conftest import MODEL, Running

QUESTION = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def client(cluster: Running) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="any", max_retries=0) as client:
        yield client



def test_models_list_and_retrieve_show_models_and_aliases(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2-135m", "gpt-4o-mini", "slow"} <= ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_completion_answers_from_the_model(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0,
                                           max_tokens=40)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert any(c in choice.message.content.lower() for c in ("red", "blue", "green"))
    assert choice.finish_reason == "stop"
    usage = reply.usage
    assert usage.prompt_tokens == 34  # SmolLM2's template with its default system prompt
    assert 0 < usage.completion_tokens < 40
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert reply.model == model and reply.id.startswith("chatcmpl-")


def test_alias_reaches_the_same_model(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=0,
                                       max_tokens=20)
    b = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0,
                                       max_tokens=20)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.model == MODEL


def test_streamed_chat_matches_the_whole_answer_and_reports_usage(
    client: openai.OpenAI, model: str,
) -> None:
    whole = client.chat.completions.create(model=model, messages=QUESTION, temperature=0,
                                           max_tokens=30)
    chunks = list(client.chat.completions.create(
        model=model, messages=QUESTION, temperature=0, max_tokens=30, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_usage_sends_no_usage_chunk(client: openai.OpenAI, model: str) -> None:
    chunks = list(client.chat.completions.create(model=model, messages=QUESTION, max_tokens=5,
                                                 stream=True))
    assert all(c.choices for c in chunks)


def test_max_tokens_and_max_completion_tokens_bound_the_answer(
    client: openai.OpenAI, model: str,
) -> None:
    prompt = [{"role": "user", "content": "Write a long story about the sea."}]
    for kwargs in ({"max_tokens": 7}, {"max_completion_tokens": 9}):
        reply = client.chat.completions.create(model=model, messages=prompt, **kwargs)
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == next(iter(kwargs.values()))


def test_seed_makes_sampling_repeatable(client: openai.OpenAI, model: str) -> None:
    def ask(seed: int) -> str:
        reply = client.completions.create(model=model, prompt="My favourite animal is",
                                          max_tokens=20, temperature=1.0, seed=seed)
        return reply.choices[0].text

    assert ask(11) == ask(11)
    assert ask(11) != ask(12)


def test_stop_sequences_end_the_answer(client: openai.OpenAI, model: str) -> None:
    full = client.completions.create(model=model, prompt="Count: one, two, three,",
                                     max_tokens=20, temperature=0).choices[0].text
    stop = full.split()[1]
    cut = client.completions.create(model=model, prompt="Count: one, two, three,",
                                    max_tokens=20, temperature=0, stop=[stop]).choices[0]
    assert cut.text == full[: full.index(stop)]
    assert cut.finish_reason == "stop"


def test_penalties_and_top_p_reach_the_engine(client: openai.OpenAI, model: str) -> None:
    def ask(**kw: float) -> str:
        return client.completions.create(model=model, prompt="I like apples. I like apples. I like",
                                          max_tokens=24, temperature=0, **kw).choices[0].text

    plain = ask()
    assert ask(frequency_penalty=2.0) != plain
    assert ask(presence_penalty=2.0) != plain
    narrow = client.completions.create(model=model, prompt="I like apples. I like apples. I like",
                                       max_tokens=24, temperature=1.0, top_p=1e-6, seed=3)
    assert narrow.choices[0].text == plain


def test_vllms_top_k_and_min_p_reach_the_engine(client: openai.OpenAI, model: str) -> None:
    """Each keeps only the likeliest token at 1, so sampling at temperature 1 is greedy."""
    def ask(seed: int, **extra: float) -> str:
        return client.completions.create(model=model, prompt="My favourite animal is",
                                         max_tokens=20, temperature=1.0, seed=seed,
                                         extra_body=extra).choices[0].text

    greedy = client.completions.create(model=model, prompt="My favourite animal is",
                                       max_tokens=20, temperature=0).choices[0].text
    assert ask(11, top_k=1) == ask(12, top_k=1) == greedy
    assert ask(11, min_p=1.0) == ask(12, min_p=1.0) == greedy
    assert ask(11, top_k=-1) == ask(11) != greedy  # -1: every token, as without it


def test_the_frequency_penalty_counts_the_whole_answer(client: openai.OpenAI,
                                                      model: str) -> None:
    """Token 1000, pushed by 70, loses 1 per time it was sampled: after about 70 of them
    it stops, on llama.cpp as on vLLM (a penalty over the last 64 tokens only would never
    reach 70, and every token would be it)."""
    reply = client.completions.create(model=model, prompt="The sky is", max_tokens=80,
                                      temperature=0, logprobs=0, logit_bias={"1000": 70},
                                      frequency_penalty=1.0)
    tokens = reply.choices[0].logprobs.tokens  # type: ignore[union-attr]
    assert 66 <= tokens.count("()") <= 72 and tokens[:60] == ["()"] * 60


APPLES = "I like apples. I like apples. I like"


def test_vllms_repetition_penalty_counts_the_prompt_and_the_answer(client: openai.OpenAI,
                                                                    model: str) -> None:
    def tokens(**extra: float) -> list[str]:
        reply = client.completions.create(model=model, prompt=APPLES, max_tokens=48,
                                          temperature=0, logprobs=0, extra_body=extra)
        return reply.choices[0].logprobs.tokens  # type: ignore[union-attr,return-value]

    plain = tokens()
    assert plain[0] == " apples" and len(set(plain)) < 16  # it loops
    penalised = tokens(repetition_penalty=100)
    # Nothing from the prompt comes back, and no token comes twice.
    assert "".join(penalised).startswith(" apple pie")
    assert len(set(penalised)) == len(penalised) == 48


def test_min_tokens_and_ignore_eos_outlast_the_end_of_text(client: openai.OpenAI,
                                                           model: str) -> None:
    def ask(**extra: object) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hi."}], temperature=0,
            max_tokens=40, extra_body=extra)

    short = ask()
    assert short.choices[0].finish_reason == "stop" and short.usage
    ended = short.usage.completion_tokens
    assert ended <= 30
    longer = ask(min_tokens=ended + 10)
    assert longer.usage and longer.usage.completion_tokens >= ended + 10
    assert longer.choices[0].message.content.startswith(short.choices[0].message.content)
    endless = ask(ignore_eos=True)
    assert endless.choices[0].finish_reason == "length"
    assert endless.usage and endless.usage.completion_tokens == 40


COUNTING = ["1, 2, 3, 4,", "A, B, C, D,"]
"""Prompts whose greedy answers (` 5, 6`, ` E, F`) are sure enough to come out the same
in any batch: vLLM's greedy answer to a near tie (`The sky is`) can change with the
batch it is computed in."""


def test_completions_take_a_string_or_a_list_of_prompts(client: openai.OpenAI, model: str) -> None:
    one = client.completions.create(model=model, prompt="The sky is", max_tokens=5,
                                    temperature=0)
    assert one.object == "text_completion" and len(one.choices) == 1
    assert one.usage.prompt_tokens == 3 and one.usage.completion_tokens == 5
    many = client.completions.create(model=model, prompt=COUNTING, max_tokens=5,
                                     temperature=0)
    assert [c.index for c in many.choices] == [0, 1]
    assert many.choices[0].text.startswith(" 5, 6")
    assert many.choices[1].text.startswith(" E, F")
    assert many.usage.completion_tokens == 10


def test_streamed_completion_matches_the_whole_one(client: openai.OpenAI, model: str) -> None:
    whole = client.completions.create(model=model, prompt="The sky is", max_tokens=12,
                                      temperature=0)
    chunks = list(client.completions.create(model=model, prompt="The sky is", max_tokens=12,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_n_gives_several_seeded_answers_with_usage_summed(
    client: openai.OpenAI, model: str,
) -> None:
    story = [{"role": "user", "content": "Write a long story about the sea."}]
    one = client.chat.completions.create(model=model, messages=story, max_tokens=1)
    reply = client.chat.completions.create(model=model, messages=story, n=3, seed=11,
                                           temperature=1.0, max_tokens=12)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert [c.finish_reason for c in reply.choices] == ["length"] * 3
    texts = [c.message.content for c in reply.choices]
    assert len(set(texts)) > 1  # seed, seed + 1, seed + 2: different answers
    assert reply.usage.prompt_tokens == one.usage.prompt_tokens  # once, as OpenAI counts
    assert reply.usage.completion_tokens == 36
    chunks = list(client.chat.completions.create(model=model, messages=story, n=3, seed=11,
                                                 temperature=1.0, max_tokens=12, stream=True))
    streamed = ["", "", ""]
    roles = []
    for chunk in chunks:
        (choice,) = chunk.choices
        streamed[choice.index] += choice.delta.content or ""
        if choice.delta.role:
            roles.append(choice.index)
    # Each choice streams under its index, opening with the role and closing with a finish.
    # (Not compared with `texts`: llama.cpp's seeded sampling shifts with its KV-cache
    # reuse, so the same seed after a different previous request can differ.)
    assert sorted(roles) == [0, 1, 2] and all(streamed) and len(set(streamed)) > 1
    finishes = [c.choices[0].index for c in chunks if c.choices[0].finish_reason]
    assert sorted(finishes) == [0, 1, 2]


def test_completion_choices_are_indexed_prompt_by_prompt(
    client: openai.OpenAI, model: str,
) -> None:
    counts = [client.completions.create(model=model, prompt=p, max_tokens=1).usage.prompt_tokens
              for p in COUNTING]
    many = client.completions.create(model=model, prompt=COUNTING, n=2, max_tokens=5,
                                     temperature=0)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert [c.text[:5] for c in many.choices] == [" 5, 6", " 5, 6", " E, F", " E, F"]
    assert many.usage.completion_tokens == 20
    assert many.usage.prompt_tokens == sum(counts)


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}}}


def test_json_response_formats_are_followed(client: openai.OpenAI, model: str) -> None:
    import jsonschema

    question = [{"role": "user", "content": "Give the name and age of Ada (36) as a JSON object."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                  "strict": True}}
    reply = client.chat.completions.create(model=model, messages=question, temperature=0,
                                           max_tokens=80, response_format=fmt)  # type: ignore[arg-type]
    jsonschema.validate(json.loads(reply.choices[0].message.content), PERSON)
    color = [{"role": "user",
              "content": 'Return a JSON object with one key, "color", naming a color.'}]
    reply = client.chat.completions.create(model=model, messages=color, temperature=0,
                                           max_tokens=80, response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=model, messages=question,
                                       response_format=bad)  # type: ignore[arg-type]
    assert error.value.body["param"] == "response_format.json_schema.schema"  # type: ignore[index]


def test_structured_outputs_choose_among_strings_and_follow_grammars(
    client: openai.OpenAI, model: str,
) -> None:
    review = [{"role": "user", "content": "Review: 'Loved it.' Positive or negative?"}]
    choices = ["positive", "negative"]
    reply = client.chat.completions.create(
        model=model, messages=review, max_tokens=10,  # type: ignore[arg-type]
        extra_body={"structured_outputs": {"choice": choices}})
    assert reply.choices[0].message.content in choices
    text = client.completions.create(
        model=model, prompt="Three digits:", max_tokens=10,
        extra_body={"structured_outputs": {"grammar": "root ::= [1-9] [0-9] [0-9]"}})
    assert len(text.choices[0].text) == 3 and text.choices[0].text.isdigit()
    regex = {"structured_outputs": {"regex": "[1-9][0-9]{2}"}}
    if model == MODEL:  # llama.cpp follows grammars, not regexes
        with pytest.raises(openai.BadRequestError) as error:
            client.completions.create(model=model, prompt="x", max_tokens=5, extra_body=regex)
        assert error.value.body["param"] == "structured_outputs.regex"  # type: ignore[index]
    else:
        text = client.completions.create(model=model, prompt="Three digits:", max_tokens=10,
                                         extra_body=regex)
        assert len(text.choices[0].text) == 3 and text.choices[0].text.isdigit()


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-17", messages=QUESTION)
    assert error.value.body["code"] == "model_not_found"
    assert "gpt-17" in error.value.message


def test_wrong_type_is_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=QUESTION,
                                       max_tokens="five")  # type: ignore[arg-type]
    assert error.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "x"}])
    assert error.value.body["param"] == "messages[0].role"


def test_context_overflow_is_400(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=model, messages=QUESTION, max_tokens=4000)
    assert error.value.body["code"] == "context_length_exceeded"


def test_malformed_json_is_400_in_openai_shape(cluster: Running) -> None:
    response = httpx.post(f"{cluster.url}/v1/chat/completions", content=b'{"model": "x",',
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]


def test_oversized_body_is_413_and_nothing_is_queued(cluster: Running) -> None:
    huge = "word " * (1024 * 1024)  # 5 MiB, over the default 4 MiB limit
    response = httpx.post(f"{cluster.url}/v1/chat/completions", timeout=30, json={
        "model": MODEL, "messages": [{"role": "user", "content": huge}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    model = next(m for m in cluster.status()["models"] if m["name"] == MODEL)
    assert model["queue"]["depth"] == 0 and model["queue"]["running"] == 0


def test_embeddings_in_both_encodings_from_the_sdk(client: openai.OpenAI) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.",
             "Quarterly revenue grew by ten percent."]
    # The SDK asks for base64 by default and decodes it; floats must be the same numbers.
    packed = client.embeddings.create(model=MODEL, input=texts)
    plain = client.embeddings.create(model="gpt-4o-mini", input=texts, encoding_format="float")
    assert packed.model == plain.model == MODEL
    assert [d.index for d in packed.data] == [0, 1, 2]
    for a, b in zip(packed.data, plain.data, strict=True):
        assert len(a.embedding) == 576
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    cat, kitten, revenue = (d.embedding for d in plain.data)
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert dot(cat, cat) == pytest.approx(1.0, abs=1e-4)
    assert dot(cat, kitten) > dot(cat, revenue)
    assert packed.usage.prompt_tokens == packed.usage.total_tokens > len(texts)


def test_embeddings_of_token_ids_and_refusals(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model=MODEL, input=[[1, 504, 2354]], encoding_format="float")
    assert one.usage.prompt_tokens == 3 and len(one.data) == 1
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=MODEL, input="hi", dimensions=64)
    assert error.value.body["param"] == "dimensions" and "576" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=MODEL, input=["fine", ""])
    assert error.value.body["param"] == "input[1]"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
