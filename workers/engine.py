"""The narrow interface every inference engine adapter implements.

An engine turns one prompt into a stream of `Delta`s ending in one `Done`, a list of
inputs into their embedding vectors, or a prompt into its token ids and back, and raises
a `raylane.cluster.errors` exception for a request it cannot serve. It owns its concurrency: `slots`
generations may run at once. It must never block the event loop it is called on;
blocking work goes to threads or processes.

Adapters: `llamacpp.LlamaCppEngine` (GGUF on CPU) and `sim.SimEngine` (a
deterministic synthetic engine for load tests, the fake of this interface).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from raylane.cluster.messages import (
    Delta,
    Done,
    Embeddings,
    Prompt,
    SamplingParams,
    TextPrompt,
    TokenizeInputs,
    TokenPrompt,
    Tokens,
)


class Engine(Protocol):
    context_length: int
    """Tokens of context (prompt + completion) one generation may use."""

    async def start(self) -> None:
        """Load weights; after it returns, `generate` may be called."""

    def generate(
        self, request_id: str, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[Delta | Done]:
        """Complete `prompt`: deltas of text, then exactly one Done."""

    async def embed(
        self, request_id: str, inputs: list[TextPrompt | TokenPrompt]
    ) -> Embeddings:
        """One normalised vector per input; raises InvalidRequest if the model has none."""

    async def tokenize(self, work: TokenizeInputs) -> Tokens:
        """The token ids a generation of `work.prompt` would begin from (with `tokens`,
        `context_length` and, if asked, `strs` set); raises InvalidRequest as `generate`
        would for the prompt."""

    async def detokenize(self, tokens: list[int]) -> str:
        """The text of `tokens`, special tokens included; InvalidRequest naming `tokens`
        for an id outside the vocabulary."""

    async def abort(self, request_id: str) -> None:
        """Stop a running generation soon (its iterator then ends without Done)."""

    async def health(self) -> None:
        """Raise if the engine cannot serve."""

    async def close(self) -> None:
        """Free the engine's resources."""


def pack(vectors: Sequence[Sequence[float]], prompt_tokens: int) -> Embeddings:
    """Vectors of one length as an `Embeddings` answer (float32, little-endian)."""
    dim = len(vectors[0]) if vectors else 0
    values = array("f")
    for vector in vectors:
        values.extend(vector)
    if sys.byteorder == "big":
        values.byteswap()
    return Embeddings(vectors=values.tobytes(), dim=dim, prompt_tokens=prompt_tokens)
