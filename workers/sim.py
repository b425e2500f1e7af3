"""The `sim` engine: deterministic synthetic generation at a set token rate.

It exists for load tests of the router and the queue, and for queue tests that
need a slow, predictable worker, without any model or hardware. It is the fake
of the Engine interface, never a stand-in for testing the real engines.

Its "tokens" are whitespace-separated words. It answers by cycling through the
words of the prompt's last message, so every answer can be traced back to the
request it belongs to. It honours max_tokens, stop strings and the context length, and
`min_tokens` and `ignore_eos` against its natural length (`default_tokens` words).
With a JSON response format it answers one minimal JSON value as a single token: `{}`
for `json_object`; for a schema, the first of the words as one JSON string, `{}`, `[]`,
`0`, `null`, `true` that the schema accepts, or an invalid-request error when none does
(it does not search for an instance of an arbitrary schema); with a choice, its first
string; a regex or a grammar it refuses. A forced tool call answers
a call of the first tool the schema accepts, with `{}` as its arguments; with tools and
`tool_choice: auto` it answers text, as a model that chose not to call would.
It takes `logit_bias` without effect: its words are no tokens.
Its log probabilities are fake and fixed: every token has -0.5, and its alternatives are
the token itself, then the filler words at -1.5, -2.5, ... (an echoed prompt's words too,
but the first, which has none).
Its embeddings are unit vectors derived from the input's words: the same text always
gets the same vector, and texts sharing words get similar ones.
It tokenizes into the words it counts, each id a hash of its word (a chat as the plain
text it generates from, whatever `add_generation_prompt` says), and cannot detokenize.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Literal

from raylane.cluster.backends import SimOptions
from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Embeddings,
    Prompt,
    SamplingParams,
    TextPrompt,
    TokenizeInputs,
    TokenLogprob,
    TokenPrompt,
    Tokens,
    TopLogprob,
    constrained,
)
from raylane.workers.engine import pack
from raylane.workers.logprobs import Pending, prompt_entries
from raylane.workers.prompts import completion_budget, plain_text
from raylane.workers.stops import StopMatcher

FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


class SimEngine:
    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.context_length = options.n_ctx
        self._aborted: set[str] = set()

    async def start(self) -> None:
        return None

    async def generate(
        self, request_id: str, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[Delta | Done]:
        text = plain_text(prompt)
        if self.options.fail_on and self.options.fail_on in text:
            os._exit(70)  # die as a crashing engine would, mid-request, without cleanup
        prompt_tokens = len(text.split())
        budget = completion_budget(prompt_tokens, params.max_tokens, self.context_length,
                                   params.limit)
        natural_end = budget if params.ignore_eos else self.options.default_tokens
        limit = min(budget, params.max_tokens or max(natural_end, params.min_tokens))
        words = _answer_words(prompt)
        structured = constrained(params)
        if structured:
            words, limit = [_constrained_answer(words, params, prompt)], min(limit, 1)
        stops = StopMatcher(params.stop)
        pending = Pending()
        start = time.monotonic() + self.options.ttft_s
        produced = 0
        if params.echo:
            yield _echo(prompt, params.logprobs)
        try:
            while produced < limit and not stops.stopped:
                await _sleep_until(start + produced / self.options.tokens_per_s)
                if request_id in self._aborted:
                    return
                word = words[produced % len(words)]
                produced += 1
                piece = word if produced == 1 else f" {word}"
                if params.logprobs is not None:
                    pending.add([_fake_logprob(piece, params.logprobs)])
                text = stops.feed(piece) if produced > params.min_tokens else piece
                if text:
                    yield Delta(text=text, tokens=1, logprobs=pending.take())
            natural = structured or (params.max_tokens is None and limit < budget)
            finish: Literal["stop", "length"] = (
                "stop" if stops.stopped or natural else "length")
            yield Done(finish_reason=finish, prompt_tokens=prompt_tokens,
                       completion_tokens=produced, text=stops.flush(), stop=stops.matched,
                       logprobs=pending.take())
        finally:
            self._aborted.discard(request_id)

    async def embed(
        self, request_id: str, inputs: list[TextPrompt | TokenPrompt]
    ) -> Embeddings:
        vectors = []
        tokens = 0
        for item in inputs:
            words = plain_text(item).split()
            if len(words) > self.context_length:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self.context_length} tokens, "
                    f"but an input has {len(words)}.", param="input")
            tokens += len(words)
            vectors.append(_word_vector(words, self.options.embedding_dim))
        return pack(vectors, tokens)

    async def tokenize(self, work: TokenizeInputs) -> Tokens:
        words = plain_text(work.prompt).split()
        return Tokens(tokens=[_word_id(w) for w in words],
                      strs=words if work.token_strs else None,
                      context_length=self.context_length)

    async def detokenize(self, tokens: list[int]) -> str:
        raise InvalidRequest("The sim engine cannot detokenize: its token ids are hashes of "
                             "words.", param="tokens")

    async def abort(self, request_id: str) -> None:
        self._aborted.add(request_id)

    async def health(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _answer_words(prompt: Prompt) -> list[str]:
    if isinstance(prompt, ChatPrompt):
        words = prompt.messages[-1].content.split() if prompt.messages else []
    else:
        words = plain_text(prompt).split()
    return words or FILLER


def _tool_names(prompt: Prompt) -> list[str]:
    if not isinstance(prompt, ChatPrompt) or not prompt.tools or not prompt.tools_forced:
        return []
    return [tool["function"]["name"] for tool in json.loads(prompt.tools)]


def _constrained_answer(words: list[str], params: SamplingParams, prompt: Prompt) -> str:
    """The one-token answer of a constrained request (see the module docstring)."""
    if params.choice:
        return params.choice[0]
    if params.regex is not None or params.grammar is not None:
        raise InvalidRequest("The sim engine cannot follow a regex or a grammar.",
                             param="structured_outputs")
    return _json_answer(words, params, _tool_names(prompt))


def _json_answer(words: list[str], params: SamplingParams, tools: list[str]) -> str:
    """A minimal JSON answer the response format (or forced tool call) accepts (see the
    module docstring)."""
    if params.json_schema is None:
        return "{}"
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(params.json_schema))
    calls: list[object] = [[{"name": name, "arguments": {}}] for name in tools]
    candidates: list[object] = [" ".join(words), {}, [], 0, None, True, *calls]
    for value in candidates:
        if validator.is_valid(value):
            return json.dumps(value)
    raise InvalidRequest("The sim engine has no answer for this JSON schema.",
                         param="tools" if tools else "response_format.json_schema.schema")


def _echo(prompt: Prompt, top: int | None) -> Delta:
    """The prompt as the answer's first delta, with fake log probabilities for its words
    (the first has none)."""
    text = plain_text(prompt)
    if top is None:
        return Delta(text=text, tokens=0)
    words = text.split()
    return Delta(text=text, tokens=0, logprobs=prompt_entries(
        list(range(len(words))), lambda i, _: _fake_logprob(f" {words[i]}", top),
        lambda i: words[i].encode()))


def _fake_logprob(piece: str, top: int) -> TokenLogprob:
    """Fixed, fake numbers (see the module docstring)."""
    alternatives = [piece, *(f" {FILLER[i % len(FILLER)]}" for i in range(top - 1))][:top]
    return TokenLogprob(piece.encode(), -0.5,
                        [TopLogprob(t.encode(), -0.5 - i) for i, t in enumerate(alternatives)])


def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=2).digest(), "little")


def _word_vector(words: list[str], dim: int) -> list[float]:
    """The normalised sum of one pseudo-random vector per word (by its hash)."""
    total = [0.0] * dim
    for word in words or [""]:
        seed = hashlib.blake2b(word.encode(), digest_size=8).digest()
        state = int.from_bytes(seed, "little") or 1
        for i in range(dim):
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            total[i] += (state >> 11) / 2**53 - 0.5
    norm = math.sqrt(sum(v * v for v in total)) or 1.0
    return [v / norm for v in total]


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
