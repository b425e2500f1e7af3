"""Logits processors for llama.cpp: what its own sampler does not do as vLLM does.

Each is a llama-cpp-python logits processor, run at the head of the sampler chain on the
logits of the next token: `logit_bias`; the presence and frequency penalties over the
whole answer so far (llama.cpp's own see the last 64 tokens only); vLLM's
`repetition_penalty` over the prompt and the answer; and the end-of-generation tokens held
back while `min_tokens` or `ignore_eos` apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raylane.cluster.messages import SamplingParams

Processor = Callable[[Any, Any], Any]
"""A llama-cpp-python logits processor: (input ids, scores) -> scores, in place."""


def processors(params: SamplingParams, held: list[int], prompt: list[int],
                completion: list[int]) -> Any:
    """The logits processors of what llama.cpp's own sampler does not do as vLLM does:
    `logit_bias`; the presence and frequency penalties over the whole answer so far (its
    own see the last 64 tokens only); vLLM's `repetition_penalty` over the prompt and the
    answer; keeping the `held` tokens (end of generation) from being sampled while
    `min_tokens` or `ignore_eos` apply. None when there is nothing to do."""
    from llama_cpp import LogitsProcessorList

    processors = [p for p in (_bias(params), _penalties(params, completion),
                              _repetition(params, prompt, completion),
                              _hold(params, held, completion)) if p is not None]
    return LogitsProcessorList(processors) if processors else None


def _bias(params: SamplingParams) -> Processor | None:
    if not params.logit_bias:
        return None
    import numpy as np

    ids = np.fromiter(params.logit_bias, dtype=np.intc)
    values = np.fromiter(params.logit_bias.values(), dtype=np.single)

    def add(_: Any, scores: Any) -> Any:
        scores[ids] += values
        return scores

    return add


def _penalties(params: SamplingParams, completion: list[int]) -> Processor | None:
    """OpenAI's presence and frequency penalties, over every token of the answer so far."""
    if not (params.presence_penalty or params.frequency_penalty):
        return None
    import numpy as np

    counts: dict[int, int] = {}
    counted = [0]  # how much of `completion` is in `counts`

    def penalise(_: Any, scores: Any) -> Any:
        for token in completion[counted[0]:]:
            counts[token] = counts.get(token, 0) + 1
        counted[0] = len(completion)
        if counts:
            ids = np.fromiter(counts, dtype=np.intc)
            times = np.fromiter(counts.values(), dtype=np.single)
            scores[ids] -= params.frequency_penalty * times + params.presence_penalty
        return scores

    return penalise


def _repetition(params: SamplingParams, prompt: list[int], completion: list[int]
                ) -> Processor | None:
    """vLLM's repetition penalty, over the prompt's and the answer's tokens."""
    if params.repetition_penalty == 1.0:
        return None
    import numpy as np

    penalty = np.single(params.repetition_penalty)
    seen = set(prompt)

    def repeat(_: Any, scores: Any) -> Any:
        seen.update(completion[-1:])
        ids = np.fromiter(seen, dtype=np.intc)
        logits = scores[ids]
        scores[ids] = np.where(logits > 0, logits / penalty, logits * penalty)
        return scores

    return repeat


def _hold(params: SamplingParams, held: list[int], completion: list[int]
          ) -> Processor | None:
    """Keep the `held` tokens from being sampled while `min_tokens` or `ignore_eos` apply."""
    if not held:
        return None
    import numpy as np

    eog = np.array(held, dtype=np.intc)
    until = None if params.ignore_eos else params.min_tokens

    def hold(_: Any, scores: Any) -> Any:
        if until is None or len(completion) < until:
            scores[eog] = -np.inf
        return scores

    return hold
