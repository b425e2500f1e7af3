"""The sim engine: deterministic, rate-limited, and faithful to max_tokens and stop."""

from __future__ import annotations

import json
import time
from array import array

import pytest

from raylane.cluster.backends import SimOptions
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import ChatPrompt, Delta, Done, Message, SamplingParams, TextPrompt
from raylane.workers.sim import SimEngine


async def run(engine: SimEngine, prompt, **params) -> tuple[str, Done]:
    text = []
    async for item in engine.generate("r", prompt, SamplingParams(**params)):
        text.append(item.text)
        if isinstance(item, Done):
            return "".join(text), item
    raise AssertionError("no Done")


def chat(content: str) -> ChatPrompt:
    return ChatPrompt([Message(role="user", content=content)])


async def test_echoes_the_last_message_up_to_max_tokens() -> None:
    text, done = await run(SimEngine(SimOptions(tokens_per_s=1000)), chat("a b c"), max_tokens=5)
    assert text == "a b c a b"
    assert (done.finish_reason, done.completion_tokens) == ("length", 5)


async def test_echo_sends_the_prompt_first_with_its_words_logprobs() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000))
    params = SamplingParams(echo=True, max_tokens=2, logprobs=1)
    items = [item async for item in engine.generate("r", TextPrompt("x y"), params)]
    assert isinstance(items[0], Delta) and (items[0].text, items[0].tokens) == ("x y", 0)
    assert [(e.token, e.logprob) for e in items[0].logprobs or []] == [(b"x", None),
                                                                      (b" y", -0.5)]
    assert "".join(i.text for i in items) == "x yx y"
    text, done = await run(engine, TextPrompt("x y"), echo=True, max_tokens=0)
    assert (text, done.completion_tokens, done.finish_reason) == ("x y", 0, "length")


async def test_natural_end_after_default_tokens() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000, default_tokens=3))
    text, done = await run(engine, TextPrompt("x y"))
    assert (text, done.finish_reason, done.prompt_tokens) == ("x y x", "stop", 2)


async def test_min_tokens_and_ignore_eos_outlast_the_natural_end() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000, default_tokens=3, n_ctx=12))
    text, done = await run(engine, TextPrompt("x y"), min_tokens=5)
    assert (text, done.finish_reason) == ("x y x y x", "stop")
    _, done = await run(engine, TextPrompt("x y"), ignore_eos=True)
    assert (done.completion_tokens, done.finish_reason) == (10, "length")  # the context
    # A stop string counts only once min_tokens are out.
    text, done = await run(engine, TextPrompt("x y"), min_tokens=2, max_tokens=8, stop=["y"])
    assert (text, done.stop) == ("x y x ", "y")


async def test_stop_string_ends_generation() -> None:
    text, done = await run(SimEngine(SimOptions(tokens_per_s=1000)), chat("one two three"),
                           max_tokens=10, stop=[" thr"])
    assert (text, done.finish_reason, done.completion_tokens) == ("one two", "stop", 3)


async def test_token_rate_is_honoured() -> None:
    began = time.monotonic()
    await run(SimEngine(SimOptions(tokens_per_s=50)), chat("w"), max_tokens=10)
    assert 0.17 < time.monotonic() - began < 0.5


async def test_context_length_is_enforced() -> None:
    with pytest.raises(ContextLengthExceeded):
        await run(SimEngine(SimOptions(n_ctx=8)), chat("a b c"), max_tokens=8)


async def test_abort_ends_the_stream_without_done() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=100))
    items = []
    async for item in engine.generate("r", chat("w"), SamplingParams(max_tokens=50)):
        items.append(item)
        if len(items) == 2:
            await engine.abort("r")
    assert all(isinstance(i, Delta) for i in items) and len(items) == 2


async def test_a_cap_limits_a_request_without_max_tokens() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000, default_tokens=100))
    _, done = await run(engine, chat("w"), limit=3)
    assert (done.completion_tokens, done.finish_reason) == (3, "length")


async def test_embeddings_are_unit_vectors_that_follow_the_words() -> None:
    engine = SimEngine(SimOptions(embedding_dim=32))
    inputs = [TextPrompt("red apple pie"), TextPrompt("red apple tart"), TextPrompt("tax law"),
              TextPrompt("red apple pie")]
    result = await engine.embed("r", inputs)
    assert (result.dim, result.count, result.prompt_tokens) == (32, 4, 11)
    values = array("f", result.vectors)
    a, b, c, again = (values[i * 32:(i + 1) * 32] for i in range(4))
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert dot(a, a) == pytest.approx(1.0, abs=1e-5)
    assert list(a) == list(again)
    assert dot(a, b) > 0.5 > dot(a, c)


async def test_an_embedding_input_longer_than_the_context_is_refused() -> None:
    with pytest.raises(ContextLengthExceeded):
        await SimEngine(SimOptions(n_ctx=3)).embed("r", [TextPrompt("one two three four")])


async def test_json_response_formats_get_a_minimal_valid_value() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000))
    text, done = await run(engine, chat("a b"), json_object=True)
    assert (text, done.finish_reason, done.completion_tokens) == ("{}", "stop", 1)
    text, _ = await run(engine, chat("a b"), json_schema='{"type": "string"}')
    assert text == '"a b"'
    text, _ = await run(engine, chat("a b"), json_schema='{"type": "array", "maxItems": 0}')
    assert text == "[]"
    with pytest.raises(InvalidRequest):
        await run(engine, chat("a b"), json_schema='{"type": "integer", "minimum": 5}')


async def test_logprobs_are_fixed_fake_values_that_follow_the_text() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000))
    entries = []
    async for item in engine.generate("r", chat("a b c"),
                                      SamplingParams(max_tokens=3, logprobs=2)):
        entries += item.logprobs or []
    assert [e.token for e in entries] == [b"a", b" b", b" c"]
    assert {e.logprob for e in entries} == {-0.5}
    assert [(t.token, t.logprob) for t in entries[1].top] == [(b" b", -0.5), (b" lorem", -1.5)]
    async for item in engine.generate("r", chat("a b c"), SamplingParams(max_tokens=3)):
        assert item.logprobs is None  # none asked for, none sent


async def test_a_forced_tool_call_answers_the_first_tool_with_no_arguments() -> None:
    tools = [{"type": "function", "function": {"name": "get_time"}}]
    schema = ('{"type": "array", "items": {"type": "object", "properties": '
              '{"name": {"const": "get_time"}, "arguments": {"type": "object"}}}, "minItems": 1}')
    prompt = ChatPrompt([Message(role="user", content="time?")], tools=json.dumps(tools),
                        tools_forced=True)
    text, _ = await run(SimEngine(SimOptions(tokens_per_s=1000)), prompt, json_schema=schema)
    assert json.loads(text) == [{"name": "get_time", "arguments": {}}]
    with pytest.raises(InvalidRequest) as error:
        await run(SimEngine(SimOptions(tokens_per_s=1000)), prompt,
                  json_schema='{"type": "array", "items": {"const": 5}, "minItems": 1}')
    assert error.value.param == "tools"


async def test_a_choice_is_answered_with_its_first_string() -> None:
    engine = SimEngine(SimOptions(tokens_per_s=1000))
    text, done = await run(engine, chat("pick"), choice=["yes", "no"])
    assert (text, done.finish_reason, done.completion_tokens) == ("yes", "stop", 1)
    with pytest.raises(InvalidRequest) as error:
        await run(engine, chat("pick"), regex="[a-z]+")
    assert error.value.param == "structured_outputs"
