"""Prompt helpers shared by engines."""

from __future__ import annotations

from raylane.cluster.errors import ContextLengthExceeded, InvalidRequest
from raylane.cluster.messages import ChatPrompt, Prompt, SamplingParams, TextPrompt, TokenPrompt


def plain_text(prompt: Prompt) -> str:
    """A prompt as plain text, for engines without a chat template of their own."""
    if isinstance(prompt, ChatPrompt):
        return "".join(f"{m.role}: {m.content}\n" for m in prompt.messages) + "assistant:"
    if isinstance(prompt, TextPrompt):
        return prompt.text
    return " ".join(str(t) for t in prompt.tokens)


def token_ids(prompt: TokenPrompt, vocab: int, param: str = "prompt") -> list[int]:
    """A token prompt's ids, checked against the model's vocabulary size."""
    if any(t < 0 or t >= vocab for t in prompt.tokens):
        raise InvalidRequest(f"Token ids must lie in [0, {vocab}).", param=param)
    return list(prompt.tokens)


def check_bias(params: SamplingParams, vocab: int) -> None:
    """Refuse a `logit_bias` naming a token outside the model's vocabulary."""
    if any(t >= vocab for t in params.logit_bias):
        raise InvalidRequest(f"logit_bias token ids must lie in [0, {vocab}).",
                             param="logit_bias")


def completion_budget(
    prompt_tokens: int, max_tokens: int | None, context: int, limit: int | None = None
) -> int:
    """Tokens the completion may have; raises when the request cannot fit.

    Without max_tokens the completion may fill the context, up to `limit` if set.
    """
    if max_tokens is None:
        if prompt_tokens >= context:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens. However, your "
                f"prompt has {prompt_tokens} tokens. Please reduce the length of the prompt.",
                param="messages",
            )
        return min(context - prompt_tokens, limit or context)
    if prompt_tokens + max_tokens > context:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, "
            f"{max_tokens} for the completion). Please reduce the length of the prompt or "
            "the completion.",
            param="max_tokens",
        )
    return max_tokens
