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

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

FinishReason = Literal["stop", "length"]
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


class AssistantMessage(Closed, kw_only=True):
    role: Literal["assistant"]
    content: str
    refusal: None


class ChatChoice(Closed, kw_only=True):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: FinishReason


class ChatCompletion(Closed, kw_only=True):
    """A whole chat completion (`stream` false)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(Closed, kw_only=True):
    """What a chunk adds: the role and first text, later text, or nothing (the last chunk)."""

    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class ChatChunkChoice(Closed, kw_only=True):
    index: int
    delta: ChunkDelta
    logprobs: None
    finish_reason: FinishReason | None


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


class TextChoice(Closed, kw_only=True):
    index: int
    text: str
    logprobs: None
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


class TextChunkChoice(Closed, kw_only=True):
    index: int
    text: str
    logprobs: None
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


# The Anthropic Messages API (`/v1/messages`, built in `anthropic.py`).

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]
AnthropicErrorType = Literal[
    "invalid_request_error", "not_found_error", "request_too_large", "rate_limit_error",
    "api_error", "overloaded_error", "timeout_error", "authentication_error", "permission_error",
]


class StreamEvent(Closed, tag_field="type", kw_only=True):
    """An event of a message stream (and an error): `type` names it."""


class TextContent(Closed, kw_only=True):
    type: Literal["text"]
    text: str


class MessageUsage(Closed, kw_only=True):
    input_tokens: int
    output_tokens: int


class Message(Closed, kw_only=True):
    """A whole message (`stream` false); in `message_start`, without content, stop or usage."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[TextContent]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: MessageUsage


class MessageStart(StreamEvent, tag="message_start", kw_only=True):
    message: Message


class ContentBlockStart(StreamEvent, tag="content_block_start", kw_only=True):
    index: int
    content_block: TextContent


class Ping(StreamEvent, tag="ping", kw_only=True):
    """Sent once after the first events, as Anthropic does."""


class TextDelta(Closed, kw_only=True):
    type: Literal["text_delta"]
    text: str


class ContentBlockDelta(StreamEvent, tag="content_block_delta", kw_only=True):
    index: int
    delta: TextDelta


class ContentBlockStop(StreamEvent, tag="content_block_stop", kw_only=True):
    index: int


class StopDelta(Closed, kw_only=True):
    stop_reason: StopReason
    stop_sequence: str | None


class MessageDelta(StreamEvent, tag="message_delta", kw_only=True):
    """The message's end: why it stopped, and its whole usage."""

    delta: StopDelta
    usage: MessageUsage


class MessageStop(StreamEvent, tag="message_stop", kw_only=True):
    """The stream's last event."""


class AnthropicErrorDetail(Closed, kw_only=True):
    type: AnthropicErrorType
    message: str


class AnthropicError(StreamEvent, tag="error", kw_only=True):
    """Every error of `/v1/messages`, as Anthropic shapes it; also a failed stream's last event."""

    error: AnthropicErrorDetail


MessageEvent = (MessageStart | ContentBlockStart | Ping | ContentBlockDelta | ContentBlockStop
                | MessageDelta | MessageStop | AnthropicError)
"""The data of one event of a message stream (its `event:` line repeats `type`)."""
MESSAGE_EVENTS = ("message_start", "content_block_start", "ping", "content_block_delta",
                  "content_block_stop", "message_delta", "message_stop", "error")


# The Ollama API (`/api/*`): its answers, in Ollama's shape.
OllamaDoneReason = Literal["stop", "length", "load"]


class OllamaError(Closed, kw_only=True):
    """Every error of the Ollama API; also the last line of a stream that failed."""

    error: str


class OllamaAssistantMessage(Closed, kw_only=True):
    role: Literal["assistant"]
    content: str


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
