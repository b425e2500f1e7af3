"""The router's `/openapi.json`: an OpenAPI 3.1 document built from its msgspec Structs.

The routes take a raw `Request` and decode bodies with msgspec, so FastAPI's own
generator sees neither request nor response bodies. This module says, for every
route in `routes.py`, what it takes (`protocol.py`), what it answers
(`schemas.py`) and which errors it may answer with (`cluster/errors.py`); the
JSON schemas themselves come from `msgspec.json.schema_components`, so they
cannot drift from the types that decode the requests.

Event streams follow the OpenAPI 3.1 convention (as schemathesis reads it):
the `text/event-stream` schema describes one event, whose `data` is a JSON
chunk, a JSON error, or the closing `[DONE]`; an Anthropic stream's events also
carry their `event` name and have no `[DONE]`. The Ollama API (`/api/*`) streams
`application/x-ndjson`: its schema describes one line (an answer piece or an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from fastapi import FastAPI
from msgspec import Meta

from raylane.router import (
    admin_routes,
    anthropic_schemas,
    ollama_schemas,
    responses_schemas,
    schemas,
)
from raylane.router.admission import MAX_TIMEOUT_S
from raylane.router.anthropic_protocol import CountTokensRequest, MessagesRequest
from raylane.router.ollama_protocol import (
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
)
from raylane.router.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    Priority,
    TokenizeRequest,
)
from raylane.router.responses_protocol import ResponsesRequest

JSON = "application/json"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
REF = "#/components/schemas/{name}"

Timeout = Annotated[float, Meta(gt=0.0, le=MAX_TIMEOUT_S)]

ERRORS: dict[int, str] = {
    400: "`invalid_request_error`: malformed JSON, wrong types, unknown fields, unsupported "
         "options or bad headers (`param` names the field); code `context_length_exceeded` "
         "when the prompt and `max_tokens` exceed the model's context.",
    401: "`invalid_request_error`, code `invalid_api_key`: no API key, or an unknown or "
         "revoked one (API keys are on, or an admin route).",
    403: "`permission_error`: an admin route called with a key other than the admin key.",
    404: "`model_not_found`: no model or alias of that name is served (or the key may not "
         "use it); on admin routes, `not_found`: no key of that name.",
    413: "`payload_too_large`: the body exceeds `router.max_body_bytes`.",
    429: "`rate_limit_error`: code `queue_full` (the model's queue is at `queue.max_depth`) "
         "or `wait_exceeds_deadline` (the estimated wait exceeds the request's deadline); "
         "`Retry-After` estimates the wait from the measured drain rate. With API keys, "
         "also `rate_limit_exceeded` (the key's requests or tokens per minute; "
         "`Retry-After` is when enough refills) or `insufficient_quota` (its token budget).",
    500: "`server_error`: code `engine_error` (the engine failed) or `job_lost` (the request "
         "was lost with its workers); no code for an unexpected failure.",
    503: "`service_unavailable` / `unavailable`: Redis is unreachable.",
    504: "`timeout_error`: code `queue_timeout` (the deadline passed before any worker "
         "started the request) or `deadline_exceeded` (it passed while generating).",
}
GENERATION_ERRORS = (400, 404, 413, 429, 500, 503, 504)


@dataclass(frozen=True)
class Operation:
    """One route as the document describes it."""

    method: str
    path: str
    operation_id: str
    summary: str
    answer: type | None
    """The 200 JSON body; None for a route that only ever answers an error."""
    errors: tuple[int, ...]
    body: type | None = None
    """The request body, for generation routes."""
    chunk: Any = None
    """One event's JSON when the request asks for `stream`."""
    error: type = schemas.ErrorResponse
    """The body of every error answer."""
    events: tuple[str, ...] = ()
    """The `event:` names of a stream whose events are named (Anthropic's)."""
    stream_type: str = SSE
    """The media type of the stream: server-sent events, or NDJSON (Ollama's)."""
    queued: bool = True
    """Whether the body goes to the queue (so X-Priority and X-Request-Timeout apply)."""
    open: bool = False
    """Whether the route needs no key even when API keys are on."""


def _ollama(method: str, path: str, operation_id: str, summary: str, answer: type | None,
            errors: tuple[int, ...], **kw: Any) -> Operation:
    return Operation(method, path, operation_id, f"Ollama API: {summary}", answer, errors,
                     error=ollama_schemas.OllamaError, stream_type=NDJSON, **kw)


_NOT_MANAGED = "Refused (400): models come from the cluster config."
OLLAMA_OPERATIONS = (
    _ollama("post", "/api/chat", "ollamaChat", "answer a conversation (streams by default).",
            ollama_schemas.OllamaChatResponse, GENERATION_ERRORS, body=OllamaChatRequest,
            chunk=ollama_schemas.OllamaChatResponse),
    _ollama("post", "/api/generate", "ollamaGenerate", "complete a prompt (streams by default).",
            ollama_schemas.OllamaGenerateResponse, GENERATION_ERRORS, body=OllamaGenerateRequest,
            chunk=ollama_schemas.OllamaGenerateResponse),
    _ollama("post", "/api/embed", "ollamaEmbed", "embed one or more inputs.",
            ollama_schemas.OllamaEmbedResponse, GENERATION_ERRORS, body=OllamaEmbedRequest),
    _ollama("post", "/api/embeddings", "ollamaEmbeddings", "embed one prompt (legacy).",
            ollama_schemas.OllamaEmbeddingResponse, GENERATION_ERRORS,
            body=OllamaEmbeddingsRequest),
    _ollama("get", "/api/tags", "ollamaTags", "list the served models and aliases.",
            ollama_schemas.OllamaTags, (500,)),
    _ollama("get", "/api/ps", "ollamaPs", "list the models with live workers.",
            ollama_schemas.OllamaPs, (500, 503)),
    _ollama("post", "/api/show", "ollamaShow", "what raylane knows about a model.",
            ollama_schemas.OllamaShow, (400, 404, 413, 500), body=OllamaShowRequest, queued=False),
    _ollama("get", "/api/version", "ollamaVersion", "raylane's version.",
            ollama_schemas.OllamaVersion, (500,)),
    *(_ollama(method, f"/api/{name}", f"ollama{name.title()}", _NOT_MANAGED, None, (400, 500))
      for method, name in (("post", "pull"), ("post", "push"), ("post", "create"),
                           ("post", "copy"), ("delete", "delete"))),
)


OPERATIONS = (
    Operation("post", "/v1/chat/completions", "createChatCompletion",
              "Complete a chat conversation.", schemas.ChatCompletion, GENERATION_ERRORS,
              body=ChatCompletionRequest, chunk=schemas.ChatCompletionChunk),
    Operation("post", "/v1/completions", "createCompletion",
              "Complete one or more prompts.", schemas.TextCompletion, GENERATION_ERRORS,
              body=CompletionRequest, chunk=schemas.TextCompletionChunk),
    Operation("post", "/v1/embeddings", "createEmbedding",
              "Embed one or more inputs.", schemas.EmbeddingList, GENERATION_ERRORS,
              body=EmbeddingRequest),
    Operation("post", "/tokenize", "tokenize",
              "vLLM's: the token ids of a prompt or of chat messages, as a worker of the model "
              "tokenizes them for generation.", schemas.TokenizeResponse, GENERATION_ERRORS,
              body=TokenizeRequest),
    Operation("post", "/detokenize", "detokenize",
              "vLLM's: the text of token ids.", schemas.DetokenizeResponse, GENERATION_ERRORS,
              body=DetokenizeRequest),
    Operation("get", "/v1/models", "listModels",
              "List the served models and their aliases.", schemas.ModelList, (500,)),
    Operation("get", "/v1/models/{model}", "retrieveModel",
              "Describe one served model or alias.", schemas.ModelCard, (404, 500)),
    Operation("get", "/health", "health",
              "Whether this router replica can reach Redis.", schemas.Health, (500, 503),
              open=True),
    Operation("get", "/raylane/status", "clusterStatus",
              "Queues, pools and replicas of every model.", schemas.ClusterStatus, (500, 503)),
    Operation("post", "/v1/messages", "createMessage",
              "Anthropic Messages API: answer a conversation (errors in Anthropic's shape).",
              anthropic_schemas.Message, GENERATION_ERRORS, body=MessagesRequest,
              chunk=anthropic_schemas.MessageEvent, error=anthropic_schemas.AnthropicError,
              events=anthropic_schemas.MESSAGE_EVENTS),
    Operation("post", "/v1/messages/count_tokens", "countMessageTokens",
              "Anthropic Messages API: the input tokens a message of this conversation would "
              "have.", anthropic_schemas.TokenCount, GENERATION_ERRORS,
              body=CountTokensRequest, error=anthropic_schemas.AnthropicError),
    Operation("post", "/v1/responses", "createResponse",
              "Responses API: answer the input (nothing is stored).",
              responses_schemas.Response, GENERATION_ERRORS, body=ResponsesRequest,
              chunk=responses_schemas.ResponseStreamEvent,
              events=responses_schemas.RESPONSE_EVENTS),
    *OLLAMA_OPERATIONS,
)


_ADMIN = "Admin API (the admin key only): "
ADMIN_OPERATIONS = (
    Operation("post", "/admin/keys", "createKey", _ADMIN + "mint an API key; the answer is "
              "the only place its secret is shown.", admin_routes.CreatedKey, (400, 500),
              body=admin_routes.CreateKey, queued=False),
    Operation("get", "/admin/keys", "listKeys", _ADMIN + "list the keys (without secrets).",
              admin_routes.KeyList, (500,)),
    Operation("delete", "/admin/keys/{name}", "revokeKey", _ADMIN + "revoke a key at once.",
              admin_routes.RevokedKey, (404, 500)),
    Operation("get", "/admin/keys/{name}/usage", "keyUsage", _ADMIN + "a key's requests and "
              "tokens so far, and its budget left (kept after revoke).", admin_routes.KeyUsage,
              (500,)),
)
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API key from `raylane keys create` (the admin key on "
                              "`/admin/*`)."},
    "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key",
                  "description": "The same key in Anthropic's header."},
}


def install(app: FastAPI, *, keys: bool = False, admin: bool = False) -> None:
    """Make `app` serve this document as `/openapi.json` instead of FastAPI's own."""
    built = document(app.title, app.version, keys=keys, admin=admin)
    app.openapi = lambda: built  # type: ignore[method-assign]  # FastAPI's documented hook


def operations(*, admin: bool = False) -> tuple[Operation, ...]:
    """The routes a router serves: the admin routes only where there is an admin key."""
    return OPERATIONS + ADMIN_OPERATIONS if admin else OPERATIONS


def document(title: str, version: str, *, keys: bool = False, admin: bool = False
             ) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the router serves: with `keys`, every
    route but health needs a key (401 without one); with `admin`, the admin routes too."""
    served = operations(admin=admin)
    types: list[Any] = [schemas.ErrorResponse, Priority, Timeout]
    for op in served:
        types += [t for t in (op.answer, op.body, op.chunk, op.error)
                  if t is not None and t not in types]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schema = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in served:
        admin_route = op in ADMIN_OPERATIONS
        paths.setdefault(op.path, {})[op.method] = _operation(
            op, schema, secured=(keys or admin_route) and not op.open, admin_route=admin_route)
    out: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "OpenAI-compatible API of a raylane cluster."},
        "paths": paths,
        "components": {"schemas": components},
    }
    if keys or admin:
        out["components"]["securitySchemes"] = SECURITY_SCHEMES
    return out


def _operation(op: Operation, schema: dict[Any, Any], *, secured: bool = False,
               admin_route: bool = False) -> dict[str, Any]:
    ok: dict[str, Any] = {JSON: {"schema": schema[op.answer]}} if op.answer else {}
    if op.chunk is not None and op.stream_type == NDJSON:
        ok[NDJSON] = {"schema": {"anyOf": [schema[op.chunk], schema[op.error]]}}
    elif op.chunk is not None:
        ok[SSE] = {"schema": _event(schema[op.chunk], schema[op.error], op.events)}
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    parameters = _parameters(op, schema)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": schema[op.body]}}}
    responses: dict[str, Any] = {}
    if ok:
        responses["200"] = {"description": _ok_description(op), "content": ok,
                            "headers": _ok_headers(op)}
    errors = op.errors
    if secured:
        out["security"] = [{"bearer": []}, {"x-api-key": []}]
        errors = tuple(sorted({*errors, 401, *((403,) if admin_route else ())}))
    for status in errors:
        responses[str(status)] = _error(status, schema[op.error])
    out["responses"] = responses
    return out


REQUEST_ID = {
    "required": True, "schema": {"type": "string"},
    "description": "The request's id: the caller's `X-Request-ID` when it is 1 to 128 of "
                   "`A-Za-z0-9._:+=@/~-`, else a new one; log lines of router and worker "
                   "carry it.",
}


def _ok_headers(op: Operation) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-ID": REQUEST_ID}
    if op.body is not None and op.queued:
        headers["X-Raylane-Queue-Wait-Ms"] = {
            "required": False, "schema": {"type": "integer", "minimum": 0},
            "description": "How long the request waited in the queue (whole milliseconds), "
                           "on every answer that is not a stream.",
        }
    return headers


def _parameters(op: Operation, schema: dict[Any, Any]) -> list[dict[str, Any]]:
    parameters = [{
        "name": "X-Request-ID", "in": "header", "required": False,
        "schema": {"type": "string"},
        "description": "An id for this request, returned as `X-Request-ID` and written in "
                       "the logs (kept when it is 1 to 128 of `A-Za-z0-9._:+=@/~-`).",
    }]
    if "{name}" in op.path:
        parameters.append({"name": "name", "in": "path", "required": True,
                           "schema": {"type": "string"}, "description": "The key's name."})
    if "{model}" in op.path:
        parameters.append({
            "name": "model", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "A served model name or alias (it may contain `/`).",
        })
    if op.body is not None and op.queued:
        parameters += [
            {"name": "X-Priority", "in": "header", "required": False,
             "schema": schema[Priority],
             "description": "Priority when the body names none; lower is more urgent."},
            {"name": "X-Request-Timeout", "in": "header", "required": False,
             "schema": schema[Timeout],
             "description": "Seconds the whole request may take (queue wait and generation); "
                            "default `queue.timeout_s`."},
        ]
    return parameters


def _ok_description(op: Operation) -> str:
    if op.chunk is None:
        return "OK"
    if op.stream_type == NDJSON:
        return ("The answer; unless `stream` is false, one JSON object per line: text with "
                "`done` false, then `done` true with the counts, or an error line if it fails "
                "after text was sent.")
    if op.events:
        return (f"The answer; with `stream: true`, its events from `{op.events[0]}` to "
                f"`{op.events[-2]}`, or ending with an `error` event if it fails after "
                "output was sent.")
    return ("The completion; with `stream: true`, a stream of chunks ending with "
            "`data: [DONE]`, or with an error event if it fails after text was sent.")


def _event(chunk: dict[str, Any], error: dict[str, Any], names: tuple[str, ...] = ()
           ) -> dict[str, Any]:
    """One server-sent event of a generation stream."""
    data = {"type": "string", "contentMediaType": JSON,
            "contentSchema": {"anyOf": [chunk, error]}}
    if names:
        return {"type": "object", "required": ["event", "data"],
                "properties": {"event": {"enum": list(names)}, "data": data}}
    return {"type": "object", "required": ["data"],
            "properties": {"data": {"anyOf": [{"const": "[DONE]"}, data]}}}


def _error(status: int, error: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ERRORS[status], "content": {JSON: {"schema": error}},
                                "headers": {"X-Request-ID": REQUEST_ID}}
    if status == 429:
        response["headers"]["Retry-After"] = {
            "required": True, "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds to wait before retrying.",
        }
    return response
