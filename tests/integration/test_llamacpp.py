"""The llama.cpp engine with the real bundled SmolLM2-135M GGUF."""

from __future__ import annotations

import asyncio
import json
import math
import time
from array import array
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio

from raylane.cluster.backends import LlamaCppOptions
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Embeddings,
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
from raylane.workers.llamacpp import LlamaCppEngine

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    engine = LlamaCppEngine(resolve_weights("bundled:smollm2-135m"),
                            LlamaCppOptions(n_ctx=512, n_threads=1), slots=2)
    await engine.start()
    yield engine
    await engine.close()


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def generate(engine: LlamaCppEngine, prompt: Prompt, **params: object) -> tuple[str, Done]:
    text = []
    async for item in engine.generate("r", prompt, SamplingParams(**params)):  # type: ignore[arg-type]
        text.append(item.text)
        if isinstance(item, Done):
            return "".join(text), item
    raise AssertionError("no Done")


def chat(content: str) -> ChatPrompt:
    return ChatPrompt(messages=[Message(role="user", content=content)])


async def test_chat_uses_the_models_own_template(engine: LlamaCppEngine) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(engine.weights), n_ctx=64, verbose=False, vocab_only=True)
    rendered = (f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n<|im_start|>user\n"
                "Name three colors.<|im_end|>\n<|im_start|>assistant\n")
    expected = len(llm.tokenize(rendered.encode(), add_bos=False, special=True))
    llm.close()
    text, done = await generate(engine, chat("Name three colors."), max_tokens=40, temperature=0)
    assert done.prompt_tokens == expected
    assert done.finish_reason == "stop"  # the model ended its turn with <|im_end|>
    assert any(color in text.lower() for color in ("red", "blue", "green", "yellow"))


async def test_max_tokens_bounds_the_answer_and_usage_counts_every_token(
    engine: LlamaCppEngine,
) -> None:
    deltas = 0
    async for item in engine.generate("r", TextPrompt("Once upon a time"),
                                      SamplingParams(max_tokens=12, temperature=0.8, seed=4)):
        if isinstance(item, Delta):
            deltas += item.tokens
        else:
            done = item
    assert done.finish_reason == "length"
    assert done.completion_tokens == 12
    assert deltas <= 12
    assert done.prompt_tokens == 4


async def test_same_seed_same_text_other_seed_other_text(engine: LlamaCppEngine) -> None:
    prompt = TextPrompt("My favourite animal is")
    a, _ = await generate(engine, prompt, max_tokens=24, temperature=1.0, seed=7)
    b, _ = await generate(engine, prompt, max_tokens=24, temperature=1.0, seed=7)
    c, _ = await generate(engine, prompt, max_tokens=24, temperature=1.0, seed=8)
    assert a == b
    assert a != c


async def test_temperature_zero_is_greedy_and_tiny_top_p_is_too(engine: LlamaCppEngine) -> None:
    prompt = TextPrompt("The capital of France is")
    greedy, _ = await generate(engine, prompt, max_tokens=16, temperature=0, seed=1)
    again, _ = await generate(engine, prompt, max_tokens=16, temperature=0, seed=99)
    narrow, _ = await generate(engine, prompt, max_tokens=16, temperature=1.0, top_p=1e-6, seed=5)
    assert greedy == again == narrow


async def test_penalties_change_a_repetitive_answer(engine: LlamaCppEngine) -> None:
    prompt = TextPrompt("I like apples. I like apples. I like")
    plain, _ = await generate(engine, prompt, max_tokens=32, temperature=0)
    freq, _ = await generate(engine, prompt, max_tokens=32, temperature=0, frequency_penalty=2.0)
    pres, _ = await generate(engine, prompt, max_tokens=32, temperature=0, presence_penalty=2.0)
    assert plain != freq
    assert plain != pres


async def test_stop_string_cuts_the_answer(engine: LlamaCppEngine) -> None:
    prompt = TextPrompt("Count: one, two, three,")
    full, _ = await generate(engine, prompt, max_tokens=24, temperature=0)
    stop = full.split()[2]
    cut, done = await generate(engine, prompt, max_tokens=24, temperature=0, stop=[stop])
    assert done.finish_reason == "stop"
    assert cut == full[: full.index(stop)]
    assert done.completion_tokens < 24


async def test_token_prompts_are_accepted(engine: LlamaCppEngine) -> None:
    text, done = await generate(engine, TokenPrompt([504, 2365, 6354, 16438]), max_tokens=4,
                                temperature=0)
    assert done.prompt_tokens == 4 and done.completion_tokens == 4 and text


async def test_a_request_that_cannot_fit_the_context_is_refused(engine: LlamaCppEngine) -> None:
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 512"):
        await generate(engine, TextPrompt("hello"), max_tokens=600)


async def test_generation_never_blocks_the_event_loop(engine: LlamaCppEngine) -> None:
    gaps: list[float] = []
    running = True

    async def tick() -> None:
        last = time.monotonic()
        while running:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await generate(engine, TextPrompt("A long story:"), max_tokens=64, temperature=0.7)
    running = False
    await ticker
    assert len(gaps) > 20
    assert max(gaps) < 0.1


async def test_slots_generate_concurrently(engine: LlamaCppEngine) -> None:
    firsts: list[float] = []
    ends: list[float] = []

    async def one(seed: int) -> None:
        async for item in engine.generate(f"c{seed}", TextPrompt("Tell me about the sea."),
                                          SamplingParams(max_tokens=48, temperature=0.7,
                                                         seed=seed)):
            if not firsts or (len(firsts) < 2 and isinstance(item, Delta)):
                firsts.append(time.monotonic())
        ends.append(time.monotonic())

    await asyncio.gather(one(1), one(2))
    assert max(firsts[:2]) < min(ends)  # both had started before either finished


async def test_abort_stops_generation_and_frees_the_slot(engine: LlamaCppEngine) -> None:
    seen = 0
    started = time.monotonic()
    stream = engine.generate("long", TextPrompt("Write a very long essay:"),
                             SamplingParams(max_tokens=400, temperature=0.7, seed=3))
    async for _ in stream:
        seen += 1
        if seen == 3:
            await engine.abort("long")
        if seen > 30:
            break
    await stream.aclose()
    assert seen < 30
    assert time.monotonic() - started < 5
    _, done = await generate(engine, TextPrompt("Hi"), max_tokens=2)  # slots are free again
    assert done.completion_tokens == 2


def vectors(result: Embeddings) -> list[list[float]]:
    values = array("f", result.vectors)
    return [list(values[i * result.dim:(i + 1) * result.dim]) for i in range(result.count)]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embeddings_are_unit_vectors_that_place_like_texts_together(
    engine: LlamaCppEngine,
) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.",
             "Quarterly revenue grew by ten percent."]
    result = await engine.embed("e", [TextPrompt(t) for t in texts])
    cat, kitten, revenue = vectors(result)
    assert result.dim == 576 and result.count == 3  # SmolLM2-135M's hidden size
    assert cosine(cat, cat) == pytest.approx(1.0, abs=1e-4)
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.1
    assert cosine(kitten, cat) > cosine(kitten, revenue) + 0.1


async def test_token_inputs_embed_like_their_text_and_usage_counts_them(
    engine: LlamaCppEngine,
) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(engine.weights), n_ctx=64, verbose=False, vocab_only=True)
    tokens = llm.tokenize(b"The cat sat on the mat.", add_bos=True, special=False)
    by_text = await engine.embed("t", [TextPrompt("The cat sat on the mat.")])
    by_tokens = await engine.embed("k", [TokenPrompt(tokens)])
    assert by_text.prompt_tokens == by_tokens.prompt_tokens == len(tokens)
    assert vectors(by_text)[0] == pytest.approx(vectors(by_tokens)[0], abs=1e-5)


async def test_embedding_inputs_longer_than_the_context_are_refused(
    engine: LlamaCppEngine,
) -> None:
    with pytest.raises(ContextLengthExceeded):
        await engine.embed("long", [TokenPrompt([100] * 600)])
    with pytest.raises(InvalidRequest):
        await engine.embed("bad", [TokenPrompt([10**9])])


async def test_embeddings_leave_generation_working(engine: LlamaCppEngine) -> None:
    before, _ = await generate(engine, chat("Name three colors."), temperature=0, max_tokens=12)
    await engine.embed("between", [TextPrompt("some text")])
    after, _ = await generate(engine, chat("Name three colors."), temperature=0, max_tokens=12)
    assert after == before


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}}}


async def test_json_response_formats_constrain_the_answer(engine: LlamaCppEngine) -> None:
    import jsonschema

    question = chat("Give the name and age of Ada (36) as a JSON object.")
    text, done = await generate(engine, question, temperature=0, max_tokens=80,
                                json_schema=json.dumps(PERSON))
    assert done.finish_reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)
    color = chat('Return a JSON object with one key, "color", naming a color.')
    text, done = await generate(engine, color, temperature=0, max_tokens=80, json_object=True)
    assert done.finish_reason == "stop" and isinstance(json.loads(text), dict)


CHOICES = ["positive", "negative", "a somewhat \"mixed\" / neutral feeling"]
THREE_DIGITS = 'root ::= [1-9] [0-9] [0-9]'


async def test_choices_and_grammars_constrain_the_answer(engine: LlamaCppEngine) -> None:
    review = chat("Review: 'I loved this film.' Is the review positive or negative?")
    for seed in range(4):  # sampled at temperature 1: still always one of them
        text, done = await generate(engine, review, seed=seed, max_tokens=40, choice=CHOICES)
        assert text in CHOICES and done.finish_reason == "stop"
    number = chat("Pick a number.")
    text, done = await generate(engine, number, max_tokens=10, seed=1, grammar=THREE_DIGITS)
    assert len(text) == 3 and text.isdigit() and text[0] != "0"
    assert done.finish_reason == "stop"


@pytest.mark.parametrize(("fields", "param"), [
    ({"grammar": "root ::= undefined-rule"}, "structured_outputs.grammar"),
    ({"choice": ["a\bc"]}, "structured_outputs.choice"),
    ({"regex": "[0-9]+"}, "structured_outputs.regex"),
])
async def test_what_llamacpp_cannot_follow_is_refused_by_name(
    engine: LlamaCppEngine, fields: dict, param: str,
) -> None:
    with pytest.raises(InvalidRequest) as error:
        await generate(engine, chat("hi"), max_tokens=4, **fields)
    assert error.value.param == param
    text, _ = await generate(engine, chat("hi"), max_tokens=8, choice=["still", "fine"])
    assert text in ("still", "fine")  # the slot was given back


async def test_a_schema_llamacpp_cannot_follow_is_refused(engine: LlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest):
        await generate(engine, chat("hi"), json_schema='{"type": "object", "$ref": "#/nope"}')
    # Its grammar would let the model answer 123: a keyword it skips is refused by name.
    digit = {"type": "object", "required": ["a"], "additionalProperties": False,
             "properties": {"a": {"type": "integer", "maximum": 9}}}
    with pytest.raises(InvalidRequest) as error:
        await generate(engine, chat("Give a JSON object with a number."),
                       json_schema=json.dumps(digit))
    assert "`properties.a.maximum`" in error.value.message
    assert error.value.param == "response_format.json_schema.schema"


async def collect(engine: LlamaCppEngine, prompt: Prompt, **params: object
                  ) -> tuple[str, list[TokenLogprob], Done]:
    """The text, the log probabilities of its tokens, and the Done."""
    text, entries = [], []
    async for item in engine.generate("r", prompt, SamplingParams(**params)):  # type: ignore[arg-type]
        text.append(item.text)
        entries += item.logprobs or []
        if isinstance(item, Done):
            return "".join(text), entries, item
    raise AssertionError("no Done")


async def test_logprobs_follow_the_text_and_the_greedy_choice(engine: LlamaCppEngine) -> None:
    question = chat("Name three colors.")
    text, entries, done = await collect(engine, question, temperature=0, max_tokens=30,
                                        logprobs=5)
    plain, _ = await generate(engine, question, temperature=0, max_tokens=30)
    assert text == plain  # asking for them changes nothing else
    assert b"".join(e.token for e in entries).decode() == text
    assert len(entries) == done.completion_tokens
    for entry in entries:
        assert entry.top[0].token == entry.token  # greedy: the likeliest
        values = [a.logprob for a in entry.top]
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert values[0] == entry.logprob <= 0 and sum(math.exp(v) for v in values) <= 1.0001
    _, none, _ = await collect(engine, question, temperature=0, max_tokens=5)
    assert none == []


ECHOED = "The capital of France is Paris. The capital of Italy is"


def logits_all_logprobs(tokens: list[int]) -> list[float]:
    """Each token's log probability given those before it, from llama-cpp-python's own
    `logits_all` pass over them (a second context of the same GGUF)."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(resolve_weights("bundled:smollm2-135m")), n_ctx=512,
                n_threads=1, logits_all=True, verbose=False)
    try:
        llm.eval(tokens)
        out = []
        for i in range(1, len(tokens)):
            row = llm.scores[i - 1].astype(np.float64)
            out.append(float(row[tokens[i]] - row.max() - np.log(np.exp(row - row.max()).sum())))
        return out
    finally:
        llm.close()


async def test_echo_sends_the_prompt_with_llama_cpps_own_logprobs(engine: LlamaCppEngine) -> None:
    params = SamplingParams(echo=True, temperature=0, max_tokens=4, logprobs=2)
    items = [item async for item in engine.generate("r", TextPrompt(ECHOED), params)]
    echo, done = items[0], items[-1]
    assert isinstance(echo, Delta) and isinstance(done, Done)
    assert (echo.text, echo.tokens, done.completion_tokens) == (ECHOED, 0, 4)
    plain, _ = await generate(engine, TextPrompt(ECHOED), temperature=0, max_tokens=4)
    assert "".join(item.text for item in items) == ECHOED + plain  # the answer is unchanged
    entries = echo.logprobs or []
    tokens = (await engine.tokenize(TokenizeInputs(prompt=TextPrompt(ECHOED)))).tokens
    assert len(entries) == len(tokens) == done.prompt_tokens
    assert b"".join(e.token for e in entries).decode() == ECHOED
    assert (entries[0].logprob, entries[0].top) == (None, [])  # nothing precedes it
    assert [e.logprob for e in entries[1:]] == pytest.approx(logits_all_logprobs(tokens),
                                                             abs=1e-4)
    for entry in entries[1:]:
        assert len(entry.top) == 2 and entry.logprob <= entry.top[0].logprob  # type: ignore[operator]
    # The prompt alone (max_tokens 0), given as token ids: its text, and nothing generated.
    text, done = await generate(engine, TokenPrompt(tokens), echo=True, max_tokens=0)
    assert (text, done.completion_tokens, done.finish_reason) == (ECHOED, 0, "length")


WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                   "properties": {"city": {"type": "string", "maxLength": 30}}}}},
    {"type": "function", "function": {"name": "get_time", "description": "The time now"}}]


QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def tool_prompt(choice: object) -> tuple[ChatPrompt, str | None]:
    """The prompt and constraint the router makes of a weather question with `choice`."""
    req = msgspec.convert({"model": "m", "messages": [QUESTION], "tools": WEATHER_TOOLS,
                           "tool_choice": choice}, ChatCompletionRequest)
    plan = tool_plan(req)
    prompt = ChatPrompt([Message(**QUESTION)], tools=plan.tools,
                        tools_forced=plan.schema is not None)
    return prompt, plan.schema


@pytest.mark.parametrize("choice", ["required", {"type": "function",
                                                 "function": {"name": "get_weather"}}])
async def test_a_forced_tool_call_follows_the_schema(engine: LlamaCppEngine,
                                                     choice: object) -> None:
    import jsonschema

    prompt, schema = tool_prompt(choice)
    text, done = await generate(engine, prompt, temperature=0, max_tokens=60, json_schema=schema)
    assert done.finish_reason == "stop"
    jsonschema.validate(json.loads(text), json.loads(schema or ""))
    # SmolLM2's template takes no tools: they reach the model in a system message.
    _, bare = await generate(engine, chat("What is the weather in Paris?"), max_tokens=1)
    assert done.prompt_tokens > bare.prompt_tokens + 50


HERMES_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call functions:\n<tools>\n"
    "{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools>\nTo call one, answer "
    '<tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n{% endif %}'
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>"
    "{% endfor %}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")


async def test_auto_tools_need_a_template_that_takes_them(engine: LlamaCppEngine) -> None:
    prompt, _ = tool_prompt("auto")
    with pytest.raises(InvalidRequest) as error:
        await generate(engine, prompt, max_tokens=5)
    assert error.value.param == "tool_choice"
    hermes = LlamaCppEngine(engine.weights, LlamaCppOptions(
        n_ctx=512, n_threads=1, chat_template=HERMES_TEMPLATE), slots=1)
    await hermes.start()
    try:
        _, with_tools = await generate(hermes, prompt, max_tokens=1)
        _, without = await generate(hermes, chat("What is the weather in Paris?"), max_tokens=1)
    finally:
        await hermes.close()
    assert with_tools.prompt_tokens > without.prompt_tokens + 50  # the template showed them


async def test_generations_cancelled_twice_give_their_slots_back(engine: LlamaCppEngine) -> None:
    """A lost lease cancels a job's task, and stopping it may cancel it again while the
    engine waits for its thread: the instance must still go back to the pool."""

    async def endless(name: str) -> None:
        async for _ in engine.generate(name, TextPrompt("Once upon a time"),
                                       SamplingParams(max_tokens=400)):
            pass

    runs = [asyncio.create_task(endless(f"cancelled{i}")) for i in range(2)]  # both slots
    await asyncio.sleep(0.3)
    for run in runs:
        run.cancel()
    await asyncio.sleep(0)  # each now waits in its finally for its thread to stop
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    _, done = await asyncio.wait_for(generate(engine, TextPrompt("Hello"), max_tokens=3),
                                        timeout=30)
    assert done.completion_tokens == 3


async def test_tokenize_counts_what_generation_reads_and_detokenize_inverts_it(
    engine: LlamaCppEngine,
) -> None:
    conversation = chat("Name three colors.")
    counted = await engine.tokenize(TokenizeInputs(conversation, token_strs=True))
    _, done = await generate(engine, conversation, temperature=0, max_tokens=2)
    assert len(counted.tokens) == done.prompt_tokens == 34
    assert counted.context_length == 512
    # the strings are the vocabulary's spellings, byte-level BPE as Hugging Face writes them
    assert counted.strs is not None and counted.strs[:2] == ["<|im_start|>", "system"]
    assert counted.strs[-4:] == ["<|im_start|>", "ass", "istant", "Ċ"]
    closed = await engine.tokenize(TokenizeInputs(conversation, add_generation_prompt=False))
    assert closed.tokens == counted.tokens[:-4]  # without the assistant's opening
    assert await engine.detokenize(counted.tokens) == (
        f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n")

    text = TextPrompt("Once upon a time, ünïcode")
    plain = await engine.tokenize(TokenizeInputs(text, add_special_tokens=False))
    assert await engine.detokenize(plain.tokens) == text.text
    _, done = await generate(engine, text, temperature=0, max_tokens=1)
    with_bos = await engine.tokenize(TokenizeInputs(text))
    assert len(with_bos.tokens) == done.prompt_tokens
    assert with_bos.strs is None


async def test_detokenize_refuses_ids_outside_the_vocabulary(engine: LlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest, match=r"\[0, 49152\)") as caught:
        await engine.detokenize([1, 49152])
    assert caught.value.param == "tokens"
