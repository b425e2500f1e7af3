"""The narrow interface every inference engine adapter implements.

An engine turns one prompt into a stream of `Delta`s ending in one `Done`, and
raises a `raylane.cluster.errors` exception for a request it cannot serve. It
owns its concurrency: `slots` generations may run at once. It must never block
the event loop it is called on; blocking work goes to threads or processes.

Adapters: `llamacpp.LlamaCppEngine` (GGUF on CPU) and `sim.SimEngine` (a
deterministic synthetic engine for load tests, the fake of this interface).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from raylane.cluster.messages import Delta, Done, Prompt, SamplingParams


class Engine(Protocol):
    context_length: int
    """Tokens of context (prompt + completion) one generation may use."""

    async def start(self) -> None:
        """Load weights; after it returns, `generate` may be called."""

    def generate(
        self, request_id: str, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[Delta | Done]:
        """Complete `prompt`: deltas of text, then exactly one Done."""

    async def abort(self, request_id: str) -> None:
        """Stop a running generation soon (its iterator then ends without Done)."""

    async def health(self) -> None:
        """Raise if the engine cannot serve."""

    async def close(self) -> None:
        """Free the engine's resources."""
