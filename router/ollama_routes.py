"""HTTP routes of the Ollama API (`/api/*`): parse, hand to the logic, turn its answer into
HTTP. Errors take Ollama's `{"error": ...}` shape in `errors.py`, like every other error."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from raylane.cluster.messages import Embeddings
from raylane.router import models, ollama_models
from raylane.router.admission import Ticket, admit
from raylane.router.http import SSE_HEADERS, read_body
from raylane.router.ollama import (
    OllamaGeneration,
    chat_job,
    chat_tools,
    embed_job,
    generate_job,
    loaded,
    served_name,
)
from raylane.router.ollama_protocol import (
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
)
from raylane.router.requests import decode, header_map
from raylane.router.state import RouterState
from raylane.router.timeline import Timeline, with_queue_wait

ollama_api = APIRouter()

NDJSON = "application/x-ndjson"


def _state(request: Request) -> RouterState:
    return request.app.state.raylane


def _admit(request: Request, model: str, kind: str) -> Ticket:
    state = _state(request)
    name = served_name(state.config, model)
    return admit(state.config, name, None, header_map(request.headers), kind)


async def _answer(generation: OllamaGeneration, stream: bool) -> Response:
    if stream:
        return StreamingResponse(await generation.stream(), media_type=NDJSON,
                                 headers=SSE_HEADERS)
    return with_queue_wait(models.json_response(await generation.collect()),
                           generation.timeline)


def _loaded(name: str, chat: bool, stream: bool) -> Response:
    body = models.json_response(loaded(name, chat))
    if stream:
        return Response(bytes(body.body) + b"\n", media_type=NDJSON)
    return body


@ollama_api.post("/api/chat")
async def chat(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), OllamaChatRequest)
    ticket = _admit(request, req.model, "chat")
    if not req.messages:
        return _loaded(req.model, True, req.stream)
    tools = chat_tools(req)
    job = chat_job(req, ticket, state.reply_to, tools)
    generation = OllamaGeneration(state.runner, job, ticket.model, req.model, chat=True,
                                  tools=tools)
    return await _answer(generation, req.stream)


@ollama_api.post("/api/generate")
async def generate(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), OllamaGenerateRequest)
    ticket = _admit(request, req.model, "text")
    if not req.prompt:
        return _loaded(req.model, False, req.stream)
    job = generate_job(req, ticket, state.reply_to)
    generation = OllamaGeneration(state.runner, job, ticket.model, req.model, chat=False)
    return await _answer(generation, req.stream)


@ollama_api.post("/api/embed")
async def embed(request: Request) -> Response:
    state = _state(request)
    started = time.monotonic()
    req = decode(await read_body(request, state), OllamaEmbedRequest)
    ticket = _admit(request, req.model, "embedding")
    job = embed_job(req.input, req.dimensions, ticket, state.reply_to)
    timeline = Timeline()
    result = await state.runner.result(job, ticket.model, Embeddings, timeline)
    took = int((time.monotonic() - started) * 1e9)
    return with_queue_wait(models.json_response(
        ollama_models.embed_response(result, req.model, took)), timeline)


@ollama_api.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), OllamaEmbeddingsRequest)
    ticket = _admit(request, req.model, "embedding")
    job = embed_job(req.prompt, None, ticket, state.reply_to)
    timeline = Timeline()
    result = await state.runner.result(job, ticket.model, Embeddings, timeline)
    return with_queue_wait(models.json_response(
        ollama_models.embedding_response_legacy(result)), timeline)


@ollama_api.get("/api/tags")
async def tags(request: Request) -> Response:
    return models.json_response(ollama_models.tags(_state(request)))


@ollama_api.get("/api/ps")
async def ps(request: Request) -> Response:
    return models.json_response(await ollama_models.ps(_state(request)))


@ollama_api.post("/api/show")
async def show(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), OllamaShowRequest)
    name = served_name(state.config, req.model or req.name or "")
    return models.json_response(ollama_models.show(state, name))


@ollama_api.get("/api/version")
async def version(request: Request) -> Response:
    return models.json_response({"version": request.app.version})


@ollama_api.post("/api/pull")
async def pull() -> Response:
    raise ollama_models.not_managed("Pulling a model")


@ollama_api.post("/api/push")
async def push() -> Response:
    raise ollama_models.not_managed("Pushing a model")


@ollama_api.post("/api/create")
async def create() -> Response:
    raise ollama_models.not_managed("Creating a model")


@ollama_api.post("/api/copy")
async def copy() -> Response:
    raise ollama_models.not_managed("Copying a model")


@ollama_api.delete("/api/delete")
async def delete() -> Response:
    raise ollama_models.not_managed("Deleting a model")
