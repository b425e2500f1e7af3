"""A worker sends what the engine produced while its last send was on the way as one piece."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from raylane.cluster.backends import SimOptions
from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import Delta, Done, SamplingParams, TextPrompt, TokenLogprob
from raylane.workers.coalesce import Item, coalesced, joined
from raylane.workers.sim import SimEngine


def answer(items: list[Item]) -> tuple[str, int]:
    """The answer's text and the tokens the deltas and the Done account for."""
    done = items[-1]
    assert isinstance(done, Done)
    assert all(isinstance(item, Delta) for item in items[:-1])
    return "".join(item.text for item in items), done.completion_tokens


async def collect(stream: AsyncIterator[Item], send_s: float, interval_s: float = 0.0,
                  sent_at: list[float] | None = None) -> list[Item]:
    """Take the items as a worker does, each send taking `send_s`; `sent_at` gets the
    time each was taken."""
    items = []
    async with contextlib.aclosing(coalesced(stream, interval_s=interval_s)) as pieces:
        async for item in pieces:
            items.append(item)
            if sent_at is not None:
                sent_at.append(time.monotonic())
            await asyncio.sleep(send_s)
    return items


def story(tokens_per_s: float, max_tokens: int, **params) -> AsyncIterator[Item]:
    engine = SimEngine(SimOptions(tokens_per_s=tokens_per_s))
    return engine.generate("r", TextPrompt("once upon a time"),
                           SamplingParams(max_tokens=max_tokens, **params))


async def test_a_consumer_that_keeps_up_gets_every_token_on_its_own() -> None:
    direct = [item async for item in story(200, 6)]
    items = await collect(story(200, 6), send_s=0)
    # The sim ends its answer as it sends the last token: those two go out together.
    assert items[:-1] == direct[:-2]
    assert [item.tokens for item in items[:-1]] == [1] * 5
    assert answer(items) == answer(direct)


async def test_a_slow_consumer_gets_the_same_answer_in_fewer_pieces() -> None:
    direct = [item async for item in story(2000, 60)]
    items = await collect(story(2000, 60), send_s=0.01)
    assert answer(items) == answer(direct)
    assert answer(direct)[1] == 60
    assert len(items) < len(direct) / 3


async def test_deltas_that_came_with_the_end_go_into_it_logprobs_too() -> None:
    def logprob(token: str) -> TokenLogprob:
        return TokenLogprob(token=token.encode(), logprob=-1.0)
    items = joined([Delta(text="a", tokens=1, logprobs=[logprob("a")]),
                    Delta(text="b", tokens=1, logprobs=[logprob("b")]),
                    Done(finish_reason="stop", prompt_tokens=2, completion_tokens=3, text="c",
                         logprobs=[logprob("c")])])
    assert len(items) == 1 and isinstance(items[0], Done)
    assert items[0].text == "abc"
    assert [lp.token for lp in items[0].logprobs or []] == [b"a", b"b", b"c"]
    assert joined([Delta(text="a", tokens=1), Delta(text="b", tokens=2)]) == [
        Delta(text="ab", tokens=3)]


async def test_an_engine_error_comes_after_what_the_engine_produced_before_it() -> None:
    async def failing() -> AsyncIterator[Item]:
        yield Delta(text="half", tokens=1)
        raise InvalidRequest("no such thing", param="x")

    items: list[Item] = []
    with pytest.raises(InvalidRequest, match="no such thing"):
        async with contextlib.aclosing(coalesced(failing())) as pieces:
            async for item in pieces:
                items.append(item)
    assert items == [Delta(text="half", tokens=1)]


async def test_a_cancelled_consumer_closes_the_engine_stream() -> None:
    closed = asyncio.Event()
    started = asyncio.Event()

    async def endless() -> AsyncIterator[Item]:
        try:
            while True:
                yield Delta(text="x", tokens=1)
                started.set()
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    consumer = asyncio.create_task(collect(endless(), send_s=0))
    await started.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert closed.is_set()


async def test_observe_sees_each_token_as_the_engine_makes_it() -> None:
    seen: list[Item] = []
    async with contextlib.aclosing(coalesced(story(2000, 20), observe=seen.append)) as pieces:
        async for _ in pieces:
            await asyncio.sleep(0.01)
    assert [item.tokens for item in seen[:-1]] == [1] * 20



async def test_with_an_interval_pieces_go_out_at_most_once_per_interval() -> None:
    direct = [item async for item in story(400, 60)]  # 0.15 s of tokens
    sent_at: list[float] = []
    items = await collect(story(400, 60), send_s=0, interval_s=0.05, sent_at=sent_at)
    assert answer(items) == answer(direct)
    assert items[0].tokens == 1  # the first token never waits
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at[:-1])]
    assert gaps and min(gaps) >= 0.049
    assert 3 <= len(items) <= 10  # about one piece per 50 ms, not one per token


async def test_with_an_interval_the_end_goes_out_when_it_comes() -> None:
    direct = [item async for item in story(2000, 20)]
    began = time.monotonic()
    items = await collect(story(2000, 20), send_s=0, interval_s=5.0)
    assert time.monotonic() - began < 1.0
    assert answer(items) == answer(direct)
    assert len(items) == 2  # the first token, then the rest with the end
