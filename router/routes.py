"""HTTP routes of the OpenAI API: parse, hand to the logic, turn its answer into HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response, StreamingResponse

from raylane.cluster.errors import ServiceUnavailable
from raylane.cluster.messages import Embeddings, Job, Tokens
from raylane.router import models
from raylane.router.admission import Ticket, admit
from raylane.router.embeddings import embedding_response
from raylane.router.generation import Generation
from raylane.router.http import SSE_HEADERS, read_body
from raylane.router.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from raylane.router.requests import (
    chat_jobs,
    completion_jobs,
    decode,
    embedding_job,
    header_map,
)
from raylane.router.shapes import ChatShape, CompletionShape, Shape
from raylane.router.state import RouterState
from raylane.router.status import cluster_status
from raylane.router.timeline import Timeline, with_queue_wait
from raylane.router.tokenize import (
    detokenize_job,
    detokenize_response,
    named_model,
    tokenize_job,
    tokenize_response,
)
from raylane.router.tools import tool_plan

api = APIRouter()
Tokenizing = TypeVar("Tokenizing", TokenizeRequest, DetokenizeRequest)

def _state(request: Request) -> RouterState:
    return request.app.state.raylane


async def _answer(state: RouterState, generation: Generation, stream: bool) -> Response:
    if stream:
        return StreamingResponse(await generation.stream(), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    return with_queue_wait(models.json_response(await generation.collect()),
                           generation.timeline)


def _generation(state: RouterState, jobs: list, shape: Shape, ticket, include_usage: bool,
                n: int):
    return Generation(runner=state.runner, jobs=jobs, shape=shape, response_id=ticket.response_id,
                      model=ticket.model, include_usage=include_usage, n=n,
                      notes_every_s=state.config.router.queue_position_interval_s)


@api.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), ChatCompletionRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers), "chat",
                   req.user)
    tools = tool_plan(req)
    jobs = chat_jobs(req, ticket, state.reply_to, tools)
    usage = bool(req.stream_options and req.stream_options.include_usage)
    shape = ChatShape(logprobs=bool(req.logprobs), tools=tools)
    generation = _generation(state, jobs, shape, ticket, usage, req.n)
    return await _answer(state, generation, req.stream)


@api.post("/v1/completions")
async def completions(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), CompletionRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers), "text",
                   req.user)
    jobs = completion_jobs(req, ticket, state.reply_to)
    usage = bool(req.stream_options and req.stream_options.include_usage)
    shape = CompletionShape(logprobs=req.logprobs is not None)
    generation = _generation(state, jobs, shape, ticket, usage, req.n)
    return await _answer(state, generation, req.stream)


@api.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), EmbeddingRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers),
                   "embedding", req.user)
    job = embedding_job(req, ticket, state.reply_to)
    timeline = Timeline()
    result = await state.runner.result(job, ticket.model, Embeddings, timeline)
    return with_queue_wait(models.json_response(embedding_response(
        result, ticket.model.name, req.encoding_format)), timeline)


@api.post("/tokenize")
async def tokenize(request: Request) -> Response:
    return await _tokenizing(request, TokenizeRequest, tokenize_job, tokenize_response)


@api.post("/detokenize")
async def detokenize(request: Request) -> Response:
    return await _tokenizing(request, DetokenizeRequest, detokenize_job, detokenize_response)


async def _tokenizing(request: Request, body: type[Tokenizing],
                      job: Callable[[Tokenizing, Ticket, str], Job],
                      answer: Callable[[Tokens], dict[str, Any]]) -> Response:
    state = _state(request)
    req = decode(await read_body(request, state), body)
    ticket = admit(state.config, named_model(state.config, req.model), req.priority,
                   header_map(request.headers), "tokenize")
    timeline = Timeline()
    result = await state.runner.result(job(req, ticket, state.reply_to), ticket.model, Tokens,
                                       timeline)
    return with_queue_wait(models.json_response(answer(result)), timeline)


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
