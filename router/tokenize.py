"""vLLM's `/tokenize` and `/detokenize`, and Anthropic's `/v1/messages/count_tokens`.

Each is one `tokenize` job. The worker that runs the model tokenizes with the tokenizer
and chat template a generation uses, so the count of a prompt (or of a conversation) is
the `prompt_tokens` (`input_tokens`) a completion of it reports. Like any job, it waits
in the queue at the request's priority and holds a worker slot while the tokenizer runs
(about a millisecond).
"""

from __future__ import annotations

from typing import Any

from raylane.cluster.config import Config
from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    DetokenizeInputs,
    Job,
    SamplingParams,
    TextPrompt,
    TokenizeInputs,
    Tokens,
)
from raylane.router.admission import Ticket
from raylane.router.protocol import DetokenizeRequest, TokenizeRequest
from raylane.router.requests import chat_messages, prompt_job
from raylane.router.tools import auto_plan


def named_model(config: Config, model: str | None) -> str:
    """The model a request names or, where it names none, the one model served (as vLLM,
    which serves one)."""
    if model is not None:
        return model
    if len(config.models) == 1:
        return config.models[0].name
    raise InvalidRequest("model is required: this server serves several models "
                         f"({', '.join(m.name for m in config.models)}).", param="model")


def tokenize_job(req: TokenizeRequest, ticket: Ticket, reply_to: str) -> Job:
    """The job of a `/tokenize` request, or InvalidRequest naming what is wrong."""
    if (req.prompt is None) == (req.messages is None):
        raise InvalidRequest("Send either prompt (text) or messages (a chat), not "
                             f"{'both' if req.prompt is not None else 'neither'}.",
                             param="prompt" if req.prompt is not None else "messages")
    strs = bool(req.return_token_strs)
    if req.messages is None:
        if req.tools:
            raise InvalidRequest("tools go with messages, not with a text prompt.",
                                 param="tools")
        work = TokenizeInputs(TextPrompt(req.prompt or ""),
                              add_special_tokens=req.add_special_tokens is not False,
                              token_strs=strs)
    else:
        if req.add_special_tokens:
            raise InvalidRequest("With messages the chat template writes the special tokens; "
                                 "add_special_tokens: true is not supported.",
                                 param="add_special_tokens")
        if req.continue_final_message:
            raise InvalidRequest("continue_final_message is not supported.",
                                 param="continue_final_message")
        tools = auto_plan(req.tools or [])
        prompt = ChatPrompt(messages=chat_messages(req.messages), tools=tools.tools)
        work = TokenizeInputs(prompt, add_generation_prompt=req.add_generation_prompt,
                              token_strs=strs)
    return prompt_job(ticket, "tokenize", work, SamplingParams(), reply_to)


def detokenize_job(req: DetokenizeRequest, ticket: Ticket, reply_to: str) -> Job:
    return prompt_job(ticket, "tokenize", DetokenizeInputs(req.tokens), SamplingParams(),
                      reply_to)


def tokenize_response(result: Tokens) -> dict[str, Any]:
    """vLLM's answer to `/tokenize`."""
    return {"count": len(result.tokens), "max_model_len": result.context_length,
            "tokens": result.tokens, "token_strs": result.strs}


def detokenize_response(result: Tokens) -> dict[str, Any]:
    """vLLM's answer to `/detokenize`."""
    return {"prompt": result.text}
