"""HTTP route of the Anthropic Messages API: parse, hand to the logic, turn its answer into HTTP.

The SDK's `anthropic-version` header is accepted and not read; its `x-api-key` is checked
by `auth.AuthMiddleware` when keys are on. `X-Priority` and `X-Request-Timeout` work as
on the OpenAI routes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from raylane.cluster.messages import Tokens
from raylane.router import models
from raylane.router.admission import admit
from raylane.router.anthropic import MessageRun, message_id
from raylane.router.anthropic_protocol import CountTokensRequest, MessagesRequest
from raylane.router.anthropic_requests import count_job, message_job, messages_tools
from raylane.router.http import SSE_HEADERS, read_body
from raylane.router.requests import decode, header_map
from raylane.router.state import RouterState
from raylane.router.timeline import Timeline, with_queue_wait

anthropic_api = APIRouter()


@anthropic_api.post("/v1/messages")
async def create_message(request: Request) -> Response:
    state: RouterState = request.app.state.raylane
    req = decode(await read_body(request, state), MessagesRequest)
    user = req.metadata.user_id if req.metadata else None
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers), "message",
                   user)
    tools = messages_tools(req)
    job = message_job(req, ticket, state.reply_to, tools)
    run = MessageRun(runner=state.runner, job=job, model=ticket.model, tools=tools,
                     id=message_id(ticket.response_id),
                     notes_every_s=state.config.router.queue_position_interval_s)
    if req.stream:
        return StreamingResponse(await run.stream(), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    return with_queue_wait(models.json_response(await run.collect()), run.timeline)


@anthropic_api.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    """The input tokens of a Messages request: its prompt, tokenized by a worker of the
    model as `/v1/messages` would render it."""
    state: RouterState = request.app.state.raylane
    req = decode(await read_body(request, state), CountTokensRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers),
                   "tokenize")
    job = count_job(req, ticket, state.reply_to)
    timeline = Timeline()
    result = await state.runner.result(job, ticket.model, Tokens, timeline)
    return with_queue_wait(models.json_response({"input_tokens": len(result.tokens)}),
                           timeline)
