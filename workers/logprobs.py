"""Token log probabilities as engines report them (`SamplingParams.logprobs`).

Each engine turns its own numbers into `TokenLogprob`s: llama.cpp from the logits
the token was sampled from (the log-softmax of the model's raw output, as vLLM
reports by default), vLLM from its `Logprob` dicts. An echoed prompt's tokens get theirs
from the logits at the position before each (`prompt_entries`); its first token has
none. `Pending` holds them until the delta that carries their text goes out, so text
and log probabilities stay in step even while a stop string holds text back. Nothing
here runs unless a request asked for log probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from raylane.cluster.messages import TokenLogprob, TopLogprob

FLOOR = -9999.0
"""The lowest log probability reported (OpenAI's and vLLM's floor; JSON has no -inf)."""


def clamp(logprob: float) -> float:
    return logprob if logprob > FLOOR else FLOOR  # also maps NaN to the floor


class Pending:
    """Log probabilities of tokens whose text has not been sent yet."""

    def __init__(self) -> None:
        self._items: list[TokenLogprob] = []
        self._wanted = False

    def add(self, items: Iterable[TokenLogprob]) -> None:
        self._wanted = True
        self._items.extend(items)

    def take(self) -> list[TokenLogprob] | None:
        """What the next delta (or the Done) carries: None when none were asked for."""
        if not self._wanted:
            return None
        items, self._items = self._items, []
        return items


def from_logits(logits: Any, token: int, top: int, piece: Callable[[int], bytes]
                ) -> TokenLogprob:
    """A sampled token's log probability and the `top` most likely tokens, from the
    logits (a numpy vector over the vocabulary) it was sampled from."""
    import numpy as np

    shifted = logits.astype(np.float64) - float(logits.max())
    logprobs = shifted - math.log(float(np.exp(shifted).sum()))
    best: list[TopLogprob] = []
    if top:
        ids = np.argpartition(-logprobs, top - 1)[:top]
        ids = ids[np.argsort(-logprobs[ids], kind="stable")]
        best = [TopLogprob(piece(int(i)), clamp(float(logprobs[i]))) for i in ids]
    return TokenLogprob(piece(token), clamp(float(logprobs[token])), best)


def prompt_entries(tokens: Sequence[int], entry: Callable[[int, int], TokenLogprob],
                   piece: Callable[[int], bytes]) -> list[TokenLogprob]:
    """An echoed prompt's entries: `entry(i, token)` is the log probability of token i
    given the tokens before it; the first token, which nothing precedes, has none."""
    if not tokens:
        return []
    return [TokenLogprob(piece(tokens[0]), None),
            *(entry(i, token) for i, token in enumerate(tokens) if i)]


def from_vllm(token: int, position: Mapping[int, Any], top: int) -> TokenLogprob:
    """A token's entry from vLLM's `{token id: Logprob}` of its position (the sampled
    token and vLLM's `top` most likely)."""

    def text(entry: Any) -> bytes:
        return (entry.decoded_token or "").encode()

    ranked = sorted(position.values(), key=lambda e: -e.logprob)[:top]
    sampled = position[token]
    return TokenLogprob(text(sampled), clamp(sampled.logprob),
                        [TopLogprob(text(e), clamp(e.logprob)) for e in ranked])
