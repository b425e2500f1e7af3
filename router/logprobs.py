"""Token log probabilities in OpenAI's two shapes (chat's and the legacy completions one)
and in Ollama's.

Workers send each token as its bytes (a token may hold part of a UTF-8 character);
its `token` string is those bytes decoded, with `\\xNN` escapes for bytes that are
no complete character, and `bytes` lists them as they are.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

from raylane.cluster.messages import TokenLogprob


def token_text(token: bytes) -> str:
    return token.decode("utf-8", errors="backslashreplace")


def _entry(token: bytes, logprob: float | None) -> dict[str, Any]:
    return {"token": token_text(token), "logprob": logprob, "bytes": list(token)}


def chat_logprobs(items: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """A chat choice's `logprobs`: None when they were not asked for."""
    if items is None:
        return None
    content = [{**_entry(t.token, t.logprob),
                "top_logprobs": [_entry(a.token, a.logprob) for a in t.top]} for t in items]
    return {"content": content, "refusal": None}


class Offsets:
    """Where tokens begin in a choice's text, in characters: a token that ends inside a
    character begins where the character does, and the one that completes it too."""

    def __init__(self) -> None:
        self.chars = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def of(self, items: Sequence[TokenLogprob]) -> list[int]:
        """The offsets of the choice's next tokens."""
        offsets = []
        for item in items:
            offsets.append(self.chars)
            self.chars += len(self._decoder.decode(item.token))
        return offsets


def completion_logprobs(items: Sequence[TokenLogprob] | None, offsets: Offsets
                        ) -> dict[str, Any] | None:
    """A text completion choice's `logprobs` (`tokens`, `token_logprobs`, `top_logprobs`,
    `text_offset`) for its next tokens. Each `top_logprobs` map holds the sampled token and
    the `logprobs` likeliest, as vLLM's do; null for an echoed prompt's first token, as its
    log probability is."""
    if items is None:
        return None
    tokens = [token_text(t.token) for t in items]
    top = [None if t.logprob is None
           else {token: t.logprob} | {token_text(a.token): a.logprob for a in t.top}
           for token, t in zip(tokens, items, strict=True)]
    return {"tokens": tokens, "token_logprobs": [t.logprob for t in items],
            "top_logprobs": top, "text_offset": offsets.of(items)}


def ollama_logprobs(items: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """Ollama's `logprobs`: chat's entries, with `top_logprobs` only where some were asked
    for (Ollama leaves the empty list out)."""
    out = []
    for t in items:
        entry = _entry(t.token, t.logprob)
        if t.top:
            entry["top_logprobs"] = [_entry(a.token, a.logprob) for a in t.top]
        out.append(entry)
    return out
