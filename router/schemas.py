"""The shapes of the router's responses, as msgspec Structs, for its OpenAPI document.

The endpoints build their answers as plain dicts (`generation.py`, `models.py`,
`status.py`, `errors.py`); these Structs say exactly what those dicts hold, so
`/openapi.json` documents them and the schemathesis test holds the two together.
They are never used to encode a response.

Every Struct forbids unknown fields, which makes its JSON schema closed
(`additionalProperties: false`): a field sent but not described here is a
schema violation, not a silent extension. A field that is sometimes left out
is typed `... | UnsetType` (optional, never null); a field always sent as null
is typed `None` (required, always null).
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from raylane.router.protocol import ToolCall

FinishReason = Literal["stop", "length"]
ChatFinishReason = Literal["stop", "length", "tool_calls"]
"""`tool_calls`: the answer is tool calls (it would otherwise have been `stop`)."""
ErrorType = Literal[
    "invalid_request_error", "rate_limit_error", "timeout_error", "service_unavailable",
    "server_error", "permission_error", "insufficient_quota",
]


class Closed(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A response object: every field it may carry is listed."""


class Usage(Closed, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(Closed, kw_only=True):
    """raylane's extension (as llama.cpp's server has one): where the request's time went,
    in milliseconds on the router's clock; with several jobs, the slowest job's queue and
    generation times, and the first text of any choice."""

    queue_ms: float
    """From enqueue until a worker started the attempt that answered."""
    ttft_ms: float
    """From the router's accepting the request until its first text."""
    generation_ms: float
    """From that start until the answer's end."""
    total_ms: float
    """From accepting the request until the end of the whole answer."""


class ChatTopLogprob(Closed, kw_only=True):
    token: str
    """The token's text; bytes that are no complete UTF-8 character as `\\xNN`."""
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(Closed, kw_only=True):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[ChatTopLogprob]
    """The `top_logprobs` likeliest tokens at this place, likeliest first."""


class ChatLogprobs(Closed, kw_only=True):
    """Sent when the request asked for `logprobs`: one entry per token of the choice (in a
    stream, per token of the chunk)."""

    content: list[ChatTokenLogprob]
    refusal: None


class AssistantMessage(Closed, kw_only=True):
    role: Literal["assistant"]
    content: str | None
    """Null when the answer is only tool calls."""
    refusal: None
    tool_calls: list[ToolCall] | UnsetType = UNSET
    """The calls (`finish_reason` `tool_calls`), in the shape a conversation sends back."""


class ChatChoice(Closed, kw_only=True):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: ChatFinishReason


class ChatCompletion(Closed, kw_only=True):
    """A whole chat completion (`stream` false)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChatChoice]
    usage: Usage
    timings: Timings


class CalledFunctionChunk(Closed, kw_only=True):
    name: str | UnsetType = UNSET
    """In the first piece of a call only."""
    arguments: str
    """The next piece of the arguments' JSON text."""


class ToolCallChunk(Closed, kw_only=True):
    """A piece of a tool call; the first piece of each call carries its id and name."""

    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: CalledFunctionChunk


class ChunkDelta(Closed, kw_only=True):
    """What a chunk adds: the role and first text, later text or tool calls, or nothing
    (the last chunk)."""

    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[ToolCallChunk] | UnsetType = UNSET


class ChatChunkChoice(Closed, kw_only=True):
    index: int
    delta: ChunkDelta
    logprobs: ChatLogprobs | None
    finish_reason: ChatFinishReason | None


class ChatCompletionChunk(Closed, kw_only=True):
    """One event of a chat stream; with `include_usage`, the last one has no choices."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChatChunkChoice]
    usage: Usage | UnsetType | None = UNSET
    """Sent only with `stream_options.include_usage`: null until the last chunk."""
    timings: Timings | UnsetType = UNSET
    """On the usage chunk, or without `include_usage` on the last chunk."""


class TextLogprobs(Closed, kw_only=True):
    """OpenAI's legacy shape, sent when the request asked for `logprobs`: one entry per
    token in each list."""

    tokens: list[str]
    token_logprobs: list[float | None]
    """Null for the first token of an echoed prompt (`echo`), which nothing precedes."""
    top_logprobs: list[dict[str, float] | None]
    """The sampled token and the `logprobs` likeliest, by their text (null where
    `token_logprobs` is)."""
    text_offset: list[int]
    """Where each token begins in the choice's text, in characters."""


class TextChoice(Closed, kw_only=True):
    index: int
    text: str
    logprobs: TextLogprobs | None
    finish_reason: FinishReason


class TextCompletion(Closed, kw_only=True):
    """A whole text completion (`stream` false)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[TextChoice]
    usage: Usage
    timings: Timings


class TextChunkChoice(Closed, kw_only=True):
    index: int
    text: str
    logprobs: TextLogprobs | None
    finish_reason: FinishReason | None


class TextCompletionChunk(Closed, kw_only=True):
    """One event of a text completion stream (OpenAI names it `text_completion` too)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[TextChunkChoice]
    usage: Usage | UnsetType | None = UNSET
    timings: Timings | UnsetType = UNSET
    """On the usage chunk, or without `include_usage` on the last chunk."""


class EmbeddingObject(Closed, kw_only=True):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str
    """The vector: numbers, or (`encoding_format: base64`) its little-endian float32 bytes
    in base64."""


class EmbeddingUsage(Closed, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Closed, kw_only=True):
    """The embeddings of every input, in input order."""

    object: Literal["list"]
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage


class TokenizeResponse(Closed, kw_only=True):
    """vLLM's answer to `/tokenize`."""

    count: int
    max_model_len: int
    """Tokens of context one generation may use (prompt and completion)."""
    tokens: list[int]
    token_strs: list[str] | None
    """With `return_token_strs`: each token as the vocabulary spells it."""


class DetokenizeResponse(Closed, kw_only=True):
    prompt: str


class ModelCard(Closed, kw_only=True):
    """A served name: a model, or an alias of one (`root` names the model)."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    root: str
    parent: str | None


class ModelList(Closed, kw_only=True):
    object: Literal["list"]
    data: list[ModelCard]


class ErrorDetail(Closed, kw_only=True):
    message: str
    type: ErrorType
    param: str | None
    code: str | None


class ErrorResponse(Closed, kw_only=True):
    """Every error, as OpenAI shapes it; also the last event of a stream that failed."""

    error: ErrorDetail


class Health(Closed, kw_only=True):
    status: Literal["ok"]
    router: str


class QueueStatus(Closed, kw_only=True):
    depth: int
    by_priority: dict[str, int]
    running: int
    dead_letters: int
    max_depth: int
    drain_per_s: float


class ReplicaStatus(Closed, kw_only=True):
    live: int
    min: int
    max: int
    serve: dict[str, int] | None
    """Replicas by state as Ray Serve reports them; null outside Serve."""
    target: int | None
    """Replicas the pool is scaling to: its fixed count, or the autoscaler's last target
    (null for an autoscaled pool before the autoscaler's first decision)."""
    autoscaled: bool
    """Whether the pool scales on its queue (replicas.min < replicas.max)."""


class ScalingStatus(Closed, kw_only=True):
    """The autoscaler's last decision for a pool, and the demand it came from."""

    current: int
    """Running replicas Serve reported."""
    target: int
    """What Serve scales to after the up/down delays."""
    desired: int
    """ceil((queued + in_flight) / target_jobs), within the bounds."""
    queued: int
    """Queued jobs this pool could take (its own queue and its share of the shared one)."""
    in_flight: int
    """Jobs this pool's replicas run."""
    target_jobs: int
    """Jobs one replica should carry."""
    age_s: float
    """Seconds since the decision."""


class WorkerStatus(Closed, kw_only=True):
    """One live worker replica of a pool, from its last heartbeat."""

    id: str
    node: str
    pid: int
    busy: int
    slots: int


class PoolStatus(Closed, kw_only=True):
    name: str
    backend: str
    model: str | None
    replicas: ReplicaStatus
    queued: int
    """Jobs waiting in this pool's own queue (sent to it by routing by deadline)."""
    slots: int
    busy: int
    workers: list[WorkerStatus]
    scaling: ScalingStatus | None
    """The autoscaler's last decision; null for a fixed-size pool or before one."""


class ModelStatus(Closed, kw_only=True):
    name: str
    aliases: list[str]
    queue: QueueStatus
    pools: list[PoolStatus]


class ClusterStatus(Closed, kw_only=True):
    """What `raylane status` shows: per model, its queue and its pools."""

    router: str
    """The router replica that answered."""
    pid: int
    """Its process id."""
    models: list[ModelStatus]
