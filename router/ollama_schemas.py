"""The shapes of the Ollama API's answers (`/api/*`, built in `ollama.py` and
`ollama_models.py`), as msgspec Structs for the OpenAPI document: closed Structs, by the
rules of `schemas.py`, never used to encode a response.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from raylane.router.schemas import Closed

OllamaDoneReason = Literal["stop", "length", "load"]


class OllamaError(Closed, kw_only=True):
    """Every error of the Ollama API; also the last line of a stream that failed."""

    error: str


class OllamaFunctionCall(Closed, kw_only=True):
    index: int
    name: str
    arguments: dict[str, Any]


class OllamaToolCall(Closed, kw_only=True):
    id: str
    function: OllamaFunctionCall


class OllamaAssistantMessage(Closed, kw_only=True):
    role: Literal["assistant"]
    content: str
    tool_calls: list[OllamaToolCall] | UnsetType = UNSET
    """The model's calls of the request's tools, each whole: in a whole answer, or in a
    streamed line of its own."""


class OllamaTokenLogprob(Closed, kw_only=True):
    token: str
    """The token's bytes decoded, with `\\xNN` escapes for bytes that are no whole
    character."""
    logprob: float
    bytes: list[int]


class OllamaLogprob(Closed, kw_only=True):
    """A generated token's log probability, with the likeliest tokens at its place when
    `top_logprobs` asked for some."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[OllamaTokenLogprob] | UnsetType = UNSET


class OllamaChatResponse(Closed, kw_only=True):
    """A whole chat answer, or (streamed) one line: text with `done` false, then the last
    line with `done` true, the counts and the durations (nanoseconds)."""

    model: str
    created_at: str
    message: OllamaAssistantMessage
    done: bool
    done_reason: OllamaDoneReason | UnsetType = UNSET
    total_duration: int | UnsetType = UNSET
    load_duration: int | UnsetType = UNSET
    prompt_eval_count: int | UnsetType = UNSET
    prompt_eval_duration: int | UnsetType = UNSET
    eval_count: int | UnsetType = UNSET
    eval_duration: int | UnsetType = UNSET
    logprobs: list[OllamaLogprob] | UnsetType = UNSET
    """With `logprobs: true`: those of the tokens of this line's text (of the whole answer
    when not streamed)."""


class OllamaGenerateResponse(Closed, kw_only=True):
    """As `OllamaChatResponse`, with the text in `response`."""

    model: str
    created_at: str
    response: str
    done: bool
    done_reason: OllamaDoneReason | UnsetType = UNSET
    total_duration: int | UnsetType = UNSET
    load_duration: int | UnsetType = UNSET
    prompt_eval_count: int | UnsetType = UNSET
    prompt_eval_duration: int | UnsetType = UNSET
    eval_count: int | UnsetType = UNSET
    eval_duration: int | UnsetType = UNSET
    logprobs: list[OllamaLogprob] | UnsetType = UNSET
    """With `logprobs: true`: those of the tokens of this line's text (of the whole answer
    when not streamed)."""


class OllamaEmbedResponse(Closed, kw_only=True):
    """One unit vector per input, in input order."""

    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class OllamaEmbeddingResponse(Closed, kw_only=True):
    """The legacy answer: the vector of the one prompt."""

    embedding: list[float]


class OllamaDetails(Closed, kw_only=True):
    """What raylane knows of a model's weights; "" where it does not know."""

    parent_model: str
    """For an alias, the model it names."""
    format: Literal["gguf", "safetensors", ""]
    family: str
    families: None
    parameter_size: str
    quantization_level: str


class OllamaModel(Closed, kw_only=True):
    name: str
    model: str
    modified_at: str
    """When this router replica started."""
    size: int
    """The weights' size in bytes where this router can see them, else 0."""
    digest: str
    details: OllamaDetails


class OllamaTags(Closed, kw_only=True):
    """Every served model and alias."""

    models: list[OllamaModel]


class OllamaRunningModel(Closed, kw_only=True):
    name: str
    model: str
    size: int
    digest: str
    details: OllamaDetails
    expires_at: str
    """Far in the future: a pool keeps its model loaded while it runs."""
    size_vram: int
    context_length: int
    """The pool's configured context (n_ctx or max_model_len), 0 when unset."""


class OllamaPs(Closed, kw_only=True):
    """The models (and aliases) with live workers now."""

    models: list[OllamaRunningModel]


class OllamaShow(Closed, kw_only=True):
    modelfile: str
    """Not a real Modelfile: a comment saying where raylane serves the model from."""
    parameters: str
    template: str
    details: OllamaDetails
    model_info: dict[str, Any]
    """raylane's view: `raylane.model`, `raylane.aliases`, `raylane.backends`,
    `raylane.context_length` (when configured)."""
    capabilities: list[str]
    modified_at: str


class OllamaVersion(Closed, kw_only=True):
    version: str
    """raylane's version."""
