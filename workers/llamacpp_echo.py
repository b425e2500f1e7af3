"""An echoed prompt on llama.cpp (`SamplingParams.echo`): its text, and the log probability
of each of its tokens given those before it, from one pass over the prompt that keeps the
logits of every position for that pass only (no `logits_all` for the instance).
"""

from __future__ import annotations

from typing import Any

from raylane.cluster.messages import Prompt, TextPrompt, TokenLogprob
from raylane.workers.logprobs import from_logits, prompt_entries


def echo_text(llm: Any, prompt: Prompt, tokens: list[int]) -> str:
    """The text an echo begins the answer with: a text prompt as sent, else its tokens'."""
    if isinstance(prompt, TextPrompt):
        return prompt.text
    return str(llm.detokenize(tokens, special=True).decode("utf-8", errors="replace"))


def prompt_logprobs(llm: Any, tokens: list[int], top: int) -> list[TokenLogprob]:
    """Each prompt token's log probability given those before it (and the `top` likeliest
    there), from one pass over the prompt that keeps every position's logits. The pass
    leaves the prompt in the context, as `Llama.eval` would, so `generate` goes on from it
    (it decodes the last token again for its logits)."""
    import llama_cpp
    import numpy as np

    def piece(token: int) -> bytes:
        return bytes(llm.detokenize([token], special=True))

    llm.reset()
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    n_vocab = llm.n_vocab()
    following: list[TokenLogprob] = []
    for start in range(0, len(tokens), llm.n_batch):
        batch = tokens[start:start + llm.n_batch]
        llm._batch.set_batch(batch=batch, n_past=start, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[start:start + len(batch)] = batch
        llm.n_tokens = start + len(batch)
        for i, after in enumerate(tokens[start + 1:start + len(batch) + 1]):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i),
                                           shape=(n_vocab,))
            following.append(from_logits(logits, after, top, piece))
    llm._requires_eval = True
    return prompt_entries(tokens, lambda i, _: following[i - 1], piece)
