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

FinishReason = Literal["stop", "length"]
ErrorType = Literal[
    "invalid_request_error", "rate_limit_error", "timeout_error", "service_unavailable",
    "server_error",
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
