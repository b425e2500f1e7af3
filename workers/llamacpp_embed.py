"""Embeddings from a GGUF model through llama.cpp.

A llama.cpp context made for embeddings computes pooled hidden states instead of
next-token logits, so it cannot serve generation: the engine keeps one such
context beside its generation slots, loaded on the first embedding request (the
weights are memory-mapped and shared, so it costs one more KV cache). Requests
take turns on it, in a thread of its own, never on the event loop.

Pooling is the model's own when its GGUF declares one (embedding models such as
BERT or nomic-embed do), else `options.embedding_pooling` (mean by default: a
causal LM such as SmolLM2 declares none). Vectors are normalised to unit length,
as OpenAI's are.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from raylane.cluster.backends import LlamaCppOptions
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import Embeddings, TextPrompt, TokenPrompt
from raylane.workers.engine import pack
from raylane.workers.prompts import token_ids

POOLING = {"mean": 1, "cls": 2, "last": 3}
"""llama.cpp's `LLAMA_POOLING_TYPE_*` values for the pooling names raylane accepts."""


class LlamaEmbedder:
    def __init__(self, weights: Path, options: LlamaCppOptions) -> None:
        self.weights = weights
        self.options = options
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-embed")
        self._lock = asyncio.Lock()
        self._llm: Any = None

    async def embed(self, inputs: list[TextPrompt | TokenPrompt]) -> Embeddings:
        loop = asyncio.get_running_loop()
        async with self._lock:
            return await loop.run_in_executor(self._thread, self._embed_all, inputs)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def _embed_all(self, inputs: list[TextPrompt | TokenPrompt]) -> Embeddings:
        llm = self._llm or self._load()
        vectors = []
        total = 0
        for item in inputs:
            tokens = self._tokens(llm, item)
            total += len(tokens)
            vectors.append(_embed_one(llm, tokens))
        return pack(vectors, total)

    def _load(self) -> Any:
        from llama_cpp import LLAMA_POOLING_TYPE_NONE, LLAMA_POOLING_TYPE_UNSPECIFIED, Llama

        def load(pooling: int) -> Any:
            n_ctx = self.options.n_ctx
            return Llama(model_path=str(self.weights), embedding=True, pooling_type=pooling,
                         n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                         n_threads=self.options.n_threads,
                         n_gpu_layers=self.options.n_gpu_layers, verbose=False)

        llm = load(LLAMA_POOLING_TYPE_UNSPECIFIED)
        if llm.pooling_type() == LLAMA_POOLING_TYPE_NONE:  # a model without a pooling of its own
            llm.close()
            llm = load(POOLING[self.options.embedding_pooling])
        self._llm = llm
        return llm

    def _tokens(self, llm: Any, item: TextPrompt | TokenPrompt) -> list[int]:
        if isinstance(item, TextPrompt):
            tokens = list(llm.tokenize(item.text.encode(), add_bos=True, special=False))
        else:
            tokens = token_ids(item, llm.n_vocab(), "input")
        if not tokens:
            raise InvalidRequest("An input must not be empty.", param="input")
        if len(tokens) > self.options.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.options.n_ctx} tokens, but an "
                f"input has {len(tokens)} tokens. Please reduce the length of the input.",
                param="input")
        return tokens


def _embed_one(llm: Any, tokens: list[int]) -> list[float]:
    """The pooled, normalised embedding of one token sequence."""
    import llama_cpp

    llm._ctx.kv_cache_clear()
    llm._batch.reset()
    llm._batch.add_sequence(tokens, 0, True)
    llm._ctx.decode(llm._batch)
    vector = list(llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, 0)[: llm.n_embd()])
    llm._batch.reset()
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
