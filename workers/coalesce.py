"""An engine's output, joined up while the previous piece is still being sent.

Each piece of an answer costs the worker one Redis call and the router one stream
entry. A worker sends a job's pieces one at a time, so while one is on its way the
engine may produce more; `coalesced` reads the engine in a task of its own and hands
out everything that came meanwhile as one item. When Redis keeps up, nothing waits and
every token goes out on its own; when it does not (a remote Redis, a busy worker, a
fast engine), the calls per job fall with the backlog instead of the backlog growing.

Consecutive deltas become one delta; deltas that came with the `Done` go into its
`text` and `logprobs` ("what no delta carried"), so a short answer can take a single
call.

With an interval (the pool's `stream_interval_s`), a piece also waits until that long
after the previous one went out, so that each job sends at most one piece per interval:
fewer Redis calls, stream entries and HTTP chunks per token, for throughput at high
concurrency, at the cost of text arriving in bursts. The first piece and the end never
wait: time to first token and the answer's total time do not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import msgspec

from raylane.cluster.messages import Delta, Done, TokenLogprob

Item = Delta | Done


async def coalesced(stream: AsyncIterator[Item],
                    observe: Callable[[Item], None] | None = None,
                    interval_s: float = 0.0) -> AsyncGenerator[Item]:
    """`stream`'s items, those that came since the last one was taken joined into one.

    After a delta went out, the next one waits until `interval_s` has passed since; the
    end goes out when it comes. `observe` sees each item as the engine produces it (for
    timing). The engine is read and, when this generator is closed, closed in a task of
    its own, so a cancelled consumer never leaves the engine's stream half-closed.
    """
    backlog = _Backlog()
    reader = asyncio.create_task(backlog.fill(stream, observe), name="raylane-engine-stream")
    hold_until = 0.0
    try:
        while items := await backlog.take(hold_until):
            for item in joined(items):
                yield item
            hold_until = time.monotonic() + interval_s if interval_s > 0 else 0.0
    finally:
        reader.cancel()
        await asyncio.wait([reader])


class _Backlog:
    """What the engine produced that the consumer has not taken yet."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.ready = asyncio.Event()
        self.ended = False
        self.failure: Exception | None = None

    async def fill(self, stream: AsyncIterator[Item],
                   observe: Callable[[Item], None] | None) -> None:
        try:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for item in stream:
                    if observe is not None:
                        observe(item)
                    self.items.append(item)
                    self.ready.set()
        except Exception as exc:  # the consumer raises it, after what came before it
            self.failure = exc
        finally:
            self.ended = True
            self.ready.set()

    @property
    def _ending(self) -> bool:
        """The stream has ended, or its `Done` is among the items."""
        return self.ended or (bool(self.items) and isinstance(self.items[-1], Done))

    async def take(self, hold_until: float = 0.0) -> list[Item]:
        """Wait for items and take them all, deltas not before `hold_until` (monotonic)
        unless the end came with them; [] once the stream has ended (or its error)."""
        while not self.items and not self.ended:
            self.ready.clear()
            await self.ready.wait()
        while not self._ending and (left := hold_until - time.monotonic()) > 0:
            self.ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.ready.wait()
        items, self.items = self.items, []
        if not items and self.failure is not None:
            raise self.failure
        return items


def joined(items: list[Item]) -> list[Item]:
    """Consecutive deltas as one delta, and deltas followed by the Done inside it."""
    out: list[Item] = []
    for item in items:
        last = out[-1] if out else None
        if isinstance(last, Delta) and isinstance(item, Delta):
            out[-1] = Delta(text=last.text + item.text, tokens=last.tokens + item.tokens,
                            logprobs=_both(last.logprobs, item.logprobs))
        elif isinstance(last, Delta) and isinstance(item, Done):
            out[-1] = msgspec.structs.replace(item, text=last.text + item.text,
                                              logprobs=_both(last.logprobs, item.logprobs))
        else:
            out.append(item)
    return out


def _both(first: list[TokenLogprob] | None,
          second: list[TokenLogprob] | None) -> list[TokenLogprob] | None:
    if first is None and second is None:
        return None
    return (first or []) + (second or [])
