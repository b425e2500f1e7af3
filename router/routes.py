"""HTTP routes of the OpenAI API: parse, hand to the logic, turn its answer into HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response, StreamingResponse

from raylane.cluster.errors import PayloadTooLarge, ServiceUnavailable
from raylane.router import models
from raylane.router.admission import admit
from raylane.router.embeddings import embedding_response
from raylane.router.generation import ChatShape, CompletionShape, Generation, Shape
from raylane.router.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from raylane.router.requests import (
    chat_jobs,
    completion_jobs,
    decode,
    embedding_job,
    header_map,
)
from raylane.router.state import RouterState
from raylane.router.status import cluster_status

api = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _state(request: Request) -> RouterState:
    return request.app.state.raylane


async def _body(request: Request, state: RouterState) -> bytes:
    limit = state.config.router.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    return body


async def _answer(state: RouterState, generation: Generation, stream: bool) -> Response:
    if stream:
        return StreamingResponse(await generation.stream(), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    return models.json_response(await generation.collect())


def _generation(state: RouterState, jobs: list, shape: Shape, ticket, include_usage: bool,
                n: int):
    return Generation(runner=state.runner, jobs=jobs, shape=shape, request_id=ticket.request_id,
                      model=ticket.model, include_usage=include_usage, n=n)


@api.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    state = _state(request)
    req = decode(await _body(request, state), ChatCompletionRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers), "chat")
    jobs = chat_jobs(req, ticket, state.reply_to)
    usage = bool(req.stream_options and req.stream_options.include_usage)
    generation = _generation(state, jobs, ChatShape(), ticket, usage, req.n)
    return await _answer(state, generation, req.stream)


@api.post("/v1/completions")
async def completions(request: Request) -> Response:
    state = _state(request)
    req = decode(await _body(request, state), CompletionRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers), "text")
    jobs = completion_jobs(req, ticket, state.reply_to)
    usage = bool(req.stream_options and req.stream_options.include_usage)
    generation = _generation(state, jobs, CompletionShape(), ticket, usage, req.n)
    return await _answer(state, generation, req.stream)


@api.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    state = _state(request)
    req = decode(await _body(request, state), EmbeddingRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers),
                   "embedding")
    job = embedding_job(req, ticket, state.reply_to)
    result = await state.runner.result(job, ticket.model)
    return models.json_response(embedding_response(result, ticket.model.name,
                                                   req.encoding_format))


@api.get("/v1/models")
async def list_models(request: Request) -> Response:
    return models.json_response(models.model_list(_state(request)))


@api.get("/v1/models/{model:path}")
async def retrieve_model(request: Request, model: str) -> Response:
    return models.json_response(models.model_card(_state(request), model))


@api.get("/health")
async def health(request: Request) -> Response:
    return models.json_response(await models.health(_state(request)))


@api.get("/raylane/status")
async def status(request: Request) -> Response:
    try:
        return models.json_response(await cluster_status(_state(request)))
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
