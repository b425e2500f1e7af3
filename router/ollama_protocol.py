"""Ollama request bodies as msgspec Structs: what the router accepts on `/api/*`.

As strict as `protocol.py`, but shaped after what the official `ollama` client
sends (it drops nulls, and sends `tools: []` and `stream: false` itself). Fields
raylane honours are typed and bounded; fields that cannot change an answer
(`keep_alive`, engine settings such as `num_ctx` or `num_thread`) are accepted
and have no effect; fields that would change an answer raylane cannot give
(`think`, `images`, `repeat_penalty` other than 1, ...) are refused with a 400
naming them (in `ollama.py`); anything else is an unknown field, also a 400.
Unlike OpenAI, Ollama streams unless the body says `"stream": false`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from raylane.router.protocol import (
    INT64_MAX,
    Int64,
    MinP,
    Penalty,
    Strict,
    Temperature,
    Tool,
    ToolName,
    TopLogprobs,
    TopP,
)

NumPredict = Annotated[int, Meta(ge=-2, le=INT64_MAX)]
"""Most tokens to generate; -1 (no limit) and -2 (fill the context) both mean the
model's limit; 0 is refused."""
KeepAlive = float | str | None
"""How long Ollama keeps a model loaded: accepted, no effect (raylane's pools keep
their models loaded while they run)."""


class OllamaOptions(Strict, kw_only=True):
    """Ollama's `options`: sampling parameters, and engine settings raylane's config owns."""

    temperature: Temperature | None = None
    top_p: TopP | None = None
    num_predict: NumPredict | None = None
    seed: Int64 | None = None
    stop: Annotated[list[str], Meta(max_length=4)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    top_k: Annotated[int, Meta(ge=0, le=INT64_MAX)] | None = None
    """Sample among the k likeliest tokens; 0: all of them."""
    min_p: MinP | None = None
    typical_p: float | None = None
    """Only 1 (off) is accepted."""
    repeat_penalty: float | None = None
    """Only 1 (off) is accepted; use presence_penalty and frequency_penalty."""
    mirostat: int | None = None
    """Only 0 (off) is accepted."""
    # Settings that act only with a sampler above switched on: no effect while it is off.
    repeat_last_n: int | None = None
    penalize_newline: bool | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    # Engine settings: each pool's `options` in the cluster config decide them.
    num_keep: int | None = None
    num_ctx: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    num_thread: int | None = None
    numa: bool | None = None
    low_vram: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None


class OllamaFunctionCall(Strict, kw_only=True):
    name: ToolName
    arguments: dict[str, Any] = {}
    index: int | None = None


class OllamaToolCall(Strict, kw_only=True):
    """A call an assistant message made, sent back as part of the conversation."""

    function: OllamaFunctionCall
    type: Literal["function"] | None = None
    id: str | None = None


class OllamaMessage(Strict, kw_only=True):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    """Refused unless empty: no served model takes images."""
    thinking: str | None = None
    """Refused unless empty: no served model thinks."""
    tool_calls: list[OllamaToolCall] | None = None
    """The calls of an assistant message."""
    tool_name: str | None = None
    """The function a `tool` message answers."""


class Generative(Strict, kw_only=True):
    """Fields shared by `/api/chat` and `/api/generate`."""

    model: Annotated[str, Meta(min_length=1)]
    stream: bool = True
    options: OllamaOptions | None = None
    format: str | dict[str, Any] | None = None
    """"json": the answer is one JSON object; a JSON Schema: the answer matches it
    (decoding is constrained, as with OpenAI's `response_format`); "" or absent: text."""
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    """Only false is accepted."""
    logprobs: bool | None = None
    """Return the log probability of each generated token (`logprobs` in the answer)."""
    top_logprobs: TopLogprobs | None = None
    """Alternatives reported per token, 0 to 20; needs `logprobs: true`."""


class OllamaChatRequest(Generative, kw_only=True):
    messages: list[OllamaMessage] = []
    """The conversation; none answers at once (Ollama's way to load a model)."""
    tools: list[Tool] | None = None
    """Functions the model may call (OpenAI's tool shape); their calls come back in
    `message.tool_calls`. Needs a model whose chat template takes tools."""


class OllamaGenerateRequest(Generative, kw_only=True):
    prompt: str = ""
    """The text to complete; with `raw` false it is the user's turn in the model's chat
    template. An empty prompt answers at once (Ollama's way to load a model)."""
    system: str | None = None
    """A system message before the prompt (not with `raw`)."""
    raw: bool = False
    """Complete the prompt as it is, without the chat template."""
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: list[str] | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None


EmbedText = Annotated[str, Meta(min_length=1)]


class OllamaEmbedRequest(Strict, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    input: EmbedText | Annotated[list[EmbedText], Meta(min_length=1, max_length=2048)]
    truncate: bool = True
    """Accepted; an input longer than the model's context is refused, never cut."""
    dimensions: Annotated[int, Meta(ge=1, le=65536)] | None = None
    """The vector length; only the model's own is served."""
    options: OllamaOptions | None = None
    keep_alive: KeepAlive = None


class OllamaEmbeddingsRequest(Strict, kw_only=True):
    """The legacy `/api/embeddings`: one prompt, one vector."""

    model: Annotated[str, Meta(min_length=1)]
    prompt: EmbedText
    options: OllamaOptions | None = None
    keep_alive: KeepAlive = None


class OllamaShowRequest(Strict, kw_only=True):
    model: str | None = None
    name: str | None = None
    """What older clients send instead of `model`."""
    verbose: bool | None = None
